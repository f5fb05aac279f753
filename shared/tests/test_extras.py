import pytest

from perception_shared.errors import UserError
from perception_shared.extras import MissingExtraError, require_extra


def test_present_module_passes():
    require_extra(["json", "math"], package="gaze-estimation", extra="export", what="export")


def test_missing_module_names_extra_and_pip_command():
    with pytest.raises(MissingExtraError) as err:
        require_extra(["json", "no_such_module_xyz"], package="gaze-estimation", extra="export", what="gaze-estimation export")
    msg = str(err.value)
    assert isinstance(err.value, UserError)
    assert "no_such_module_xyz" in msg and "json" not in msg
    assert 'pip install "packages/gaze-estimation[export]"' in msg


def test_shared_extra_points_at_shared_folder():
    with pytest.raises(MissingExtraError, match=r'pip install "shared\[wandb\]"'):
        require_extra("no_such_module_xyz", package="perception-shared", extra="wandb", what="tracking.wandb")
