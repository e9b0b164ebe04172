"""Face-embedding models: registry, factory, contracts and architectures."""

from facefit.models import dlib_resnet as _dlib_resnet  # noqa: F401 - registers "dlib-resnet"
from facefit.models import inception_resnet_v1 as _inception_resnet_v1  # noqa: F401 - registers "inception-resnet-v1"
from facefit.models import iresnet as _iresnet  # noqa: F401 - registers "iresnet50", "iresnet100"
from facefit.models import mobilefacenet as _mobilefacenet  # noqa: F401 - registers "mobilefacenet"
from facefit.models import sface as _sface  # noqa: F401 - registers "sface"
from facefit.models.artifact import save_model
from facefit.models.base import FaceEmbedder
from facefit.models.contract import EmbeddingContract
from facefit.models.factory import create_model
from facefit.models.registry import DEFAULT_MODEL, get_spec, list_models, register_model

__all__ = [
    "DEFAULT_MODEL", "EmbeddingContract", "FaceEmbedder", "create_model", "get_spec", "list_models",
    "register_model", "save_model",
]
