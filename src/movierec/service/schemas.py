"""Request and response models of the API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, model_validator

Strategy = Literal[
    "als", "ease", "itemknn", "popularity", "mixed", "ranked", "bpr", "genre", "mf", "sequential"
]


def _ascii_int(value: object) -> object:
    """Path and query numbers: ASCII digits only (no ``²``, ``٣``, ``1.0``, ``+1`` or spaces)."""
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit() and len(value) <= 12):
            raise ValueError("must be a whole number written with the digits 0-9")
        return int(value)
    return value


#: The one id type of JSON bodies: a JSON integer (not a string, not a float) in 1 … 2³¹−1.
Id = Annotated[int, Strict(), Field(ge=1, lt=2**31)]
#: The id type of paths and query strings: ASCII digits, 1 … 2³¹−1.
IdParam = Annotated[int, BeforeValidator(_ascii_int), Field(ge=1, lt=2**31)]
#: A count in a query string (k, limit): ASCII digits.
Count = Annotated[int, BeforeValidator(_ascii_int)]
#: Input models: unknown keys, NaN and infinities are 422.
INPUT = ConfigDict(extra="forbid", allow_inf_nan=False)


class MovieOut(BaseModel):
    """A catalog movie."""

    movie_id: int
    title: str
    year: int | None = None
    genres: list[str] = []
    interactions: int = 0
    tmdb_id: int | None = None


class ItemOut(BaseModel):
    """A recommended movie."""

    movie_id: int
    title: str
    year: int | None = None
    genres: list[str] = []
    score: float
    source: str
    reasons: list[str] | None = None


class RecommendationOut(BaseModel):
    """A recommendation list with its provenance."""

    user_id: int | None
    strategy: str
    source: str
    fallback: bool
    model_version: str
    items: list[ItemOut]
    unknown_movies: list[int] = []


class BatchIn(BaseModel):
    """Many users at once."""

    model_config = INPUT
    user_ids: list[Id] = Field(
        min_length=1,
        max_length=10_000,
        description="At most MOVIEREC_MAX_BATCH_USERS (default 1,000) users, and users × k "
        "at most MOVIEREC_MAX_BATCH_ITEMS (default 50,000); more is refused with 422 before "
        "any work.",
    )
    k: Annotated[int, Strict()] = Field(default=10, ge=1, le=500)
    strategy: Strategy | None = None


class BatchOut(BaseModel):
    """One list per requested user, in order."""

    model_version: str
    results: list[RecommendationOut]


class SessionIn(BaseModel):
    """A new user's session: movies they liked and disliked."""

    model_config = INPUT
    liked: list[Id] = Field(default_factory=list, max_length=1000)
    disliked: list[Id] = Field(default_factory=list, max_length=1000)
    k: Annotated[int, Strict()] = Field(default=10, ge=1, le=500)
    strategy: Strategy | None = None


class FeedbackIn(BaseModel):
    """One feedback event."""

    model_config = INPUT
    user_id: Id
    movie_id: Id
    signal: Literal["like", "dislike", "rating", "watch", "save"]
    value: float | None = Field(
        default=None, description="Rating (0.5-5, half steps) or watch minutes."
    )
    source: str | None = Field(default=None, max_length=64)
    timestamp: float | None = Field(default=None, gt=0, lt=1e11)

    @model_validator(mode="after")
    def _check_value(self) -> FeedbackIn:
        if self.signal == "rating":
            v = self.value
            if v is None or not 0.5 <= v <= 5.0 or v * 2 != round(v * 2):
                raise ValueError("a rating needs a value in [0.5, 5] in half steps")
        if self.signal == "watch" and self.value is not None and not 0 < self.value < 1e6:
            raise ValueError("watch value must be positive minutes")
        return self


class FeedbackOut(BaseModel):
    """An acknowledged (durably stored) feedback event."""

    id: int
    user_id: int
    movie_id: int
    signal: str
    stored: bool = True


class PredictionOut(BaseModel):
    """A predicted rating."""

    user_id: int
    movie_id: int
    rating: float
    source: str
    model_version: str


class ReloadIn(BaseModel):
    """Which version to load (default: the one CURRENT points to)."""

    model_config = INPUT
    version: str | None = Field(
        default=None, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
    )


class RecommendQuery(BaseModel):
    """The query string of ``GET /recommend/user/{id}`` (validated as one model)."""

    model_config = ConfigDict(allow_inf_nan=False)
    k: Count = Field(default=10, ge=1, le=500, description="How many movies.")
    strategy: Strategy | None = None
    exclude_seen: bool = True
    explain: bool = False
    alpha: float | None = Field(default=None, ge=0, le=1, description="Blend weight of mixed.")


class ColdQuery(BaseModel):
    """The query string of ``GET /recommend_cold`` (validated as one model)."""

    model_config = ConfigDict(allow_inf_nan=False)
    liked: str = Field(
        min_length=1,
        max_length=20_000,
        pattern=r"^[0-9]{1,10}( *, *[0-9]{1,10})*$",
        description="Comma-separated movie ids.",
    )
    k: Count = Field(default=10, ge=1, le=500, description="How many movies.")
    strategy: Strategy | None = None
    explain: bool = False


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """OpenAPI ``parameters`` (in: query) of a query model's fields, for ``openapi_extra``."""
    schema_of = model.model_json_schema()
    props, required = schema_of["properties"], set(schema_of.get("required", ()))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": schema,
            **({"description": schema["description"]} if "description" in schema else {}),
        }
        for name, schema in props.items()
    ]
