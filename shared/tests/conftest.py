import pytest
import torch

from perception_shared.logging import close_logging


@pytest.fixture(autouse=True)
def _small_threads_and_clean_logging():
    torch.set_num_threads(1)
    yield
    close_logging()
