"""Server settings from the environment (``FACEFIT_SERVE_*``) or from ``facefit serve``'s options."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from facefit.serve.keys import Client


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
    max_pixels: int = Field(40_000_000, ge=1, le=1_000_000_000,
                            description="largest photo, in pixels (width x height), refused before decoding")
    max_side: int = Field(4096, ge=256, le=65535, description="photos longer than this are decoded at a reduced "
                                                              "size and searched there; boxes are in the "
                                                              "upload's own pixels")
    max_decodes: int = Field(2, ge=1, le=64, description="photos decoded and searched for faces at once; "
                                                         "others wait (the per-request memory ceiling)")
    decode_wait_s: float = Field(60.0, gt=0, le=3600, description="longest wait for a decode slot before a 503")
    header_timeout_s: float = Field(10.0, gt=0, le=3600, description="a request's headers must arrive within this")
    body_timeout_s: float = Field(60.0, gt=0, le=86400, description="a request's body must arrive within this")
    max_connections: int = Field(100, ge=1, le=100_000, description="open connections and requests at once; "
                                                                    "beyond it, 503")
    api_key: SecretStr | None = Field(None, description="when set, every endpoint but /health needs "
                                                        "'Authorization: Bearer <key>'")
    keys: str | None = Field(None, description="file of 'key role name' lines (roles: read, enrol, admin); "
                                               "every endpoint but /health, the page and the docs then needs "
                                               "one of its keys")
    allow_enrol: bool = Field(True, description="allow POST/DELETE on /persons")

    @field_validator("api_key")
    @classmethod
    def _a_real_key(cls, value: SecretStr | None) -> SecretStr | None:
        """A key that is set but empty or blank would let in anyone who sends ``Authorization: Bearer``."""
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("the API key is empty or blank; set a real key, or unset it to serve without one")
        return value

    @field_validator("keys")
    @classmethod
    def _a_usable_keys_file(cls, value: str | None) -> str | None:
        """Read once here, so a bad file is a one-line error at start-up rather than a server nobody can use."""
        from facefit.serve.keys import KeysError, load_keys

        if value is not None:
            try:
                load_keys(value)
            except KeysError as exc:
                raise ValueError(str(exc)) from None
        return value

    def clients(self) -> dict[str, Client]:
        """Every accepted key and who holds it: the keys file's, and ``api_key`` as an admin key; empty: no keys."""
        from facefit.serve.keys import Client, Role, load_keys

        out = load_keys(self.keys) if self.keys is not None else {}
        if self.api_key is not None:
            out[self.api_key.get_secret_value().strip()] = Client(Role.admin, "FACEFIT_SERVE_API_KEY")
        return out
