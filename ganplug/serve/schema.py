"""The wire format: one pydantic model per request and response, the single source of the OpenAPI schema.

The plugins cannot import pydantic (they run in Krita's and Blender's own Pythons), so they build plain
dicts; tests/plugins checks that every dict they build validates against these models.

The request models are made per server by `request_models(settings)`: the bounds a server enforces on
images per request, frames and output sides come from its settings, so its schema (/docs) states them and
a request over them is refused as it is parsed. The module-level names are those of a default server.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ganplug.serve.settings import ServeSettings

API_VERSION = "v1"
MAX_SEED_LIST = 64  # seeds an interpolation visits, rows or columns of a style mix

Seed = Annotated[int, Field(ge=0, le=2**32 - 1, description="A seed names one latent; same seed, same image.")]
ModelName = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$", description="A name from GET /v1/models."),
]
Truncation = Annotated[float, Field(ge=0.0, le=2.0, description="1 = full variety; lower = safer, blander.")]
Noise = Annotated[Literal["const", "random", "none"] | None,
                  Field(description="Noise inputs of style-based models (`--noise`); omitted = const.")]
StyleIndex = Annotated[int, Field(ge=0, le=63)]
EDIT_AMOUNT_MAX = 100.0  # standard deviations; ganplug.directions.MAX_AMOUNT (not imported: it pulls in torch)
MAX_EDITS = 64


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Edit(_Strict):
    """One move along a latent direction of the model's directions file (`ganplug directions`)."""

    direction: int = Field(ge=0, le=511, description="Direction index: 0 is the one of largest spread.")
    amount: float = Field(ge=-EDIT_AMOUNT_MAX, le=EDIT_AMOUNT_MAX,
                          description="How far, in standard deviations of the samples along it (e.g. 2.5, -1).")


Edits = Annotated[
    Annotated[str, Field(max_length=1024)] | Annotated[list[Edit], Field(max_length=MAX_EDITS)] | None,
    Field(description="Moves along the model's latent directions, as `ganplug generate --edit`: '0:+2.5,3:-1' or "
                      "a list of {direction, amount}. Uses directions.safetensors in the model's run folder (422 "
                      "when it has none); in w after truncation for style-based models, in z otherwise."),
]


MAX_LATENT_VALUES = 1 << 16  # numbers in one latent (StyleGAN at 1024 px: 18 x 512 = 9216)
MAX_LATENT_B64 = 4 * ((MAX_LATENT_VALUES * 4 + 2) // 3)  # base64 characters of that many float32
DIRECTION_NAME_MAX = 40  # characters; ganplug.directions.NAME_MAX
MAX_DIRECTIONS = 512  # `ganplug directions --n` at most


class Latent(_Strict):
    """A latent as the server gives it (a projection's `params.latent`) and takes it back (`latent` on
    /v1/generate and /v1/variations): little-endian float32 numbers, base64-encoded."""

    space: Literal["w", "z"] = Field(description="w [num_ws, w_dim] (style-based models) or z [z_dim].")
    shape: list[Annotated[int, Field(ge=1, le=MAX_LATENT_VALUES)]] = Field(
        min_length=1, max_length=2, description="Must be the model's latent shape in `space`.")
    dtype: Literal["float32"] = "float32"
    data: str = Field(min_length=1, max_length=MAX_LATENT_B64,
                      description=f"Base64 of the little-endian float32 numbers (at most {MAX_LATENT_VALUES}).")


class _Output(_Strict):
    """Options every request has (its subclasses are made per server by `request_models`)."""


def request_models(limits: ServeSettings) -> dict[str, type[_Output]]:
    """The request models of a server with these limits, by kind: their bounds are the ones it enforces."""
    # distinct names: a class body cannot see an enclosing name it also assigns (`frames`)
    most_images, most_frames, most_side = limits.max_batch, limits.frame_limit, limits.max_side
    Side = Annotated[int, Field(ge=8, le=most_side,
                                description="Output side in pixels (resampled from the model's size).")]
    mix = f"; rows x columns at most {most_images}."

    class Output(_Output):
        model: ModelName | None = Field(None, description="Model name; omitted = the first model.")
        truncation: Truncation = 1.0
        size: Side | None = Field(None, description="Square output side; overridden by width/height.")
        width: Side | None = None
        height: Side | None = None
        tileable: bool = Field(False, description="Seamless: left/right and top/bottom edges continue each other.")

    class SeedOutput(Output):
        noise: Noise = None

    class GenerateRequest(SeedOutput):
        seeds: list[Seed] | None = Field(None, min_length=1, max_length=most_images,
                                         description="Explicit seeds (one image each).")
        count: int = Field(1, ge=1, le=most_images, description="Images to make when `seeds` is omitted.")
        seed: Seed | None = Field(None, description="First of `count` consecutive seeds; omitted = random.")
        latent: Latent | None = Field(None, description="One image of this latent (a projection's `params.latent`) "
                                                        "instead of seeds; `edits` and `truncation` apply alike.")
        edits: Edits = None

        @model_validator(mode="after")
        def _one_source(self):
            if self.latent is not None and (self.seeds is not None or self.seed is not None
                                            or "count" in self.model_fields_set):
                raise ValueError("give `latent` or seeds (`seeds`, or `count` and `seed`), not both")
            return self

    class VariationsRequest(SeedOutput):
        seed: Seed = Field(description="The seed whose image to vary; with `latent`, the seed of the variations.")
        count: int = Field(min(4, most_images), ge=1, le=most_images)
        strength: float = Field(0.3, ge=0.0, le=1.0, description="0 = the seed's own image, 1 = unrelated images.")
        latent: Latent | None = Field(None, description="Vary this latent's image instead of the seed's.")
        edits: Edits = Field(None, description="Vary the edited image: every variation moved as /v1/generate's "
                                               "`edits` move a seed's image.")

    class InterpolateRequest(SeedOutput):
        seeds: list[Seed] = Field(min_length=2, max_length=max(2, min(MAX_SEED_LIST, most_frames)))
        frames: int = Field(max(2, min(8, most_frames)), ge=2, le=max(2, most_frames))
        loop: bool = False

    class StyleMixRequest(SeedOutput):
        row_seeds: list[Seed] = Field(min_length=1, max_length=min(MAX_SEED_LIST, most_images),
                                      description="Seeds giving the coarse styles" + mix)
        col_seeds: list[Seed] = Field(min_length=1, max_length=min(MAX_SEED_LIST, most_images),
                                      description="Seeds giving the fine styles" + mix)
        styles: str | list[StyleIndex] | None = Field(
            None, max_length=64, description="Style inputs taken from the row seeds, as `ganplug mix --styles`: "
                                             "'0-6', '0,2,4-5' or a list; omitted = the coarse half.")
        crossover: int | None = Field(None, ge=0, le=64, description="Older form of `styles`: k means styles "
                                                                      "0..k-1 from the rows.")

    class TranslateRequest(Output):
        image: str = Field(description="The input image: base64 of a PNG/JPEG/WebP file.", min_length=1)

    class ProjectRequest(Output):
        image: str = Field(description="The image to find in the model's latent space: base64 PNG/JPEG/WebP.",
                           min_length=1)
        steps: int = Field(200, ge=1, le=5000)
        seed: Seed = 0
        optimize_noise: bool = Field(True, description="Also fit the noise maps (`ganplug project --noise`). The "
                                                       "result's `params.latent` carries w only, so only with false "
                                                       "does generating from it give the projected image exactly.")

    return {"generate": GenerateRequest, "variations": VariationsRequest, "interpolate": InterpolateRequest,
            "stylemix": StyleMixRequest, "translate": TranslateRequest, "project": ProjectRequest}


KINDS: dict[str, type[_Output]] = request_models(ServeSettings())
GenerateRequest = KINDS["generate"]
VariationsRequest = KINDS["variations"]
InterpolateRequest = KINDS["interpolate"]
StyleMixRequest = KINDS["stylemix"]
TranslateRequest = KINDS["translate"]
ProjectRequest = KINDS["project"]


class ImageOut(BaseModel):
    png: str = Field(description="Base64 PNG.")
    width: int
    height: int
    seed: int | None = None
    variation: int | None = Field(None, description="Variation index (variations of `seed`).")
    frame: int | None = None
    row_seed: int | None = None
    col_seed: int | None = None
    label: str = ""


class ImagesResponse(BaseModel):
    model: str
    kind: str
    images: list[ImageOut]
    params: dict = Field(default_factory=dict, description="The request as it was resolved (seeds filled in).")
    elapsed_s: float = 0.0


class Supports(BaseModel):
    generate: bool = True
    truncation: bool = True
    tileable: bool = True
    variations: bool = True
    interpolate: bool = True
    style_mix: bool = False
    translate: bool = False
    project: bool = False
    edits: bool = Field(False, description="Has a directions file, so `edits` on /v1/generate work.")


class Compiled(BaseModel):
    batch_sizes: list[int]
    seconds: float = Field(description="Compile and warm-up time at load.")
    max_diff_vs_fp32: int = Field(description="Largest uint8 difference of probe images from the eager fp32 pass.")
    cuda_graphs: bool


class ModelInfo(BaseModel):
    name: str
    arch: str
    size: int
    channels: int
    z_dim: int
    step: int | None = None
    loaded: bool = False
    supports: Supports
    directions: int | None = Field(None, description="Directions in its directions file; null when it has none.")
    compiled: Compiled | None = Field(None, description="Set once the server compiled it (--compile).")


class DirectionsInfo(BaseModel):
    count: int = Field(description="Directions in the model's directions file (`edits` take 0..count-1).")
    space: Literal["w", "z"]
    names: list[str | None] = Field(description="One per direction: the name given to it, or null.")


DirectionName = Annotated[str, Field(max_length=DIRECTION_NAME_MAX,
                                     description="At most 40 printable characters; '' = unnamed.")]


class DirectionNames(_Strict):
    names: list[DirectionName] = Field(max_length=MAX_DIRECTIONS,
                                       description="Names of directions 0, 1, ...: at most the file's count.")


class UnusableModel(BaseModel):
    name: str
    reason: str = Field(description="Why the checkpoint cannot be served (damaged, foreign, too large...).")


class ModelList(BaseModel):
    models: list[ModelInfo]
    unusable: list[UnusableModel] = Field(default_factory=list,
                                          description="Checkpoints found under --models that cannot be served.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    api: str = API_VERSION
    device: str
    models: int
    unusable: int = Field(0, description="Checkpoints found that cannot be served (see GET /v1/models).")
    jobs_active: int


class Version(BaseModel):
    version: str
    api: str = API_VERSION


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


class JobInfo(BaseModel):
    id: str
    kind: str
    state: JobState
    progress: float = Field(ge=0.0, le=1.0)
    message: str = ""
    error: str | None = None
    created: float
    result: ImagesResponse | None = None


class JobList(BaseModel):
    jobs: list[JobInfo]


class ErrorBody(BaseModel):
    error: str = Field(description="One sentence saying what was wrong and how to fix it.")
    code: str
