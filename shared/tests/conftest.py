import logging

import pytest
import torch


@pytest.fixture(autouse=True)
def _small_threads_and_clean_logging():
    torch.set_num_threads(1)
    yield
    logger = logging.getLogger("perception")
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
