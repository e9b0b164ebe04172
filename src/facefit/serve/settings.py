"""Server settings from the environment (``FACEFIT_SERVE_*``) or from ``facefit serve``'s options."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServeSettings(BaseSettings):
    """Everything the server needs to know, validated once at start-up."""

    model_config = SettingsConfigDict(env_prefix="FACEFIT_SERVE_", extra="forbid", frozen=True)

    model: str | None = Field(None, description="model name or path (default: the gallery's model, else "
                                                "dlib-resnet)")
    gallery: str | None = Field(None, description="gallery file or postgresql:// URL (default: $FACEFIT_GALLERY "
                                                  "or the per-user gallery); none: 1:N endpoints answer 503")
    no_gallery: bool = Field(False, description="serve verification and embedding only")
    detector: Literal["model", "hog", "yunet", "auto"] = Field(
        "model", description="model: the model's own detector (dlib-resnet: hog; sface: yunet)")
    threshold: float | None = Field(None, gt=0, allow_inf_nan=False,
                                    description="1:N accept threshold (default: the model's own)")
    verify_threshold: float | None = Field(None, gt=0, allow_inf_nan=False,
                                           description="1:1 threshold (default: the model's own)")
    max_upload_mb: float = Field(10.0, gt=0, le=200, description="largest accepted image upload")
    max_request_mb: float = Field(100.0, gt=0, le=4096, description="largest request body (all its uploads); "
                                                                   "refused while it arrives")
    max_faces: int = Field(20, ge=1, le=200, description="faces identified per uploaded photo")
    api_key: SecretStr | None = Field(None, description="when set, every endpoint but /health needs "
                                                        "'Authorization: Bearer <key>'")
    allow_enrol: bool = Field(True, description="allow POST/DELETE on /persons")
