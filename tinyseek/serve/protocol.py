"""Request and response bodies of the OpenAI/DeepSeek-compatible API, as pydantic models.

Design choices:
- Requests are strict (`strict=True`: "5" is not an integer, 1 is not a boolean; only an integral
  number such as 11.0 counts as an integer, as JSON Schema says) and closed
  (`extra="forbid"`: an unknown field is an error naming it, as OpenAI answers "Unrecognized request
  argument"), so a typo never silently changes sampling. The same models generate /openapi.json, so
  the schema states exactly what is accepted.
- Bounds that do not depend on the model live here (n <= MAX_N, top_logprobs <= 20, 4 stop strings,
  at most MAX_PROMPTS prompts, MAX_MESSAGES messages and MAX_CONTENT_PARTS parts per message);
  bounds that do (prompt + max_tokens within the context) are checked once the prompt is tokenized.
  The list bounds are also what keeps a 2 MiB body cheap: pydantic checks a list's length before
  validating its items, so 690,000 prompts (4 MiB) are refused in ~20 ms instead of ~200 ms of validation on
  the event loop (long enough to stall /health for every client). Token-id lists are checked by
  one call per list, not one per id, for the same reason.
- `max_reasoning_tokens` is our extension (also reachable through the openai client's `extra_body`).
- Responses carry DeepSeek's fields: `reasoning_content` beside `content` (mirrored as `reasoning`,
  the name vLLM and Ollama clients read) and the prefix-cache counts `prompt_cache_hit_tokens` /
  `prompt_cache_miss_tokens` beside OpenAI's `prompt_tokens_details.cached_tokens`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

MAX_N = 16
MAX_STOP = 4
MAX_TOP_LOGPROBS = 20
MAX_COMPLETION_LOGPROBS = 5
MAX_SEED = 2**63 - 1
MAX_PROMPTS = 64  # prompts per /v1/completions request (and prompts x n choices)
MAX_MESSAGES = 2048
MAX_CONTENT_PARTS = 256


def _integral_float_to_int(value: object) -> object:
    """JSON Schema's `integer` includes 11.0; strict pydantic would refuse it, so convert it first."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _token_ids(value: object, handler: ValidatorFunctionWrapHandler) -> list[int]:
    """A list of token ids, validated in C: pydantic checks the integers, then one `min` finds a
    negative id (a per-item `ge=0` bound cost ~20 ms more for 640,000 ids on a 2-core CPU).
    Integral floats are converted only when the plain check fails, not scanned for on every list."""
    try:
        ids: list[int] = handler(value)
    except ValidationError:
        if not (isinstance(value, list) and float in set(map(type, value))):
            raise
        ids = handler([_integral_float_to_int(item) for item in value])
    if ids and min(ids) < 0:
        position = next(i for i, token in enumerate(ids) if token < 0)
        raise PydanticCustomError(
            "token_id",
            "token ids are >= 0, got {id} at position {position}",
            {"id": ids[position], "position": position},
        )
    return ids


_JsonInt = BeforeValidator(_integral_float_to_int)
# Bounds sit inside the type so the JSON Schema states them (minimum/maximum) even when optional.
PositiveInt = Annotated[int, Field(ge=1), _JsonInt]
SeedInt = Annotated[int, Field(ge=0, le=MAX_SEED), _JsonInt]
ChoiceCount = Annotated[int, Field(ge=1, le=MAX_N), _JsonInt]
TopLogprobCount = Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS), _JsonInt]
CompletionLogprobCount = Annotated[int, Field(ge=0, le=MAX_COMPLETION_LOGPROBS), _JsonInt]
TokenIds = Annotated[
    list[Annotated[int, WithJsonSchema({"type": "integer", "minimum": 0})]], WrapValidator(_token_ids)
]
FinishReason = Literal["stop", "length"]
NonEmptyStr = Annotated[str, Field(min_length=1)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- shared request fields --------------------------------------------------------------------


class StreamOptions(_Request):
    include_usage: bool = Field(False, description="Send a last chunk with the usage and no choices.")


class _SamplingFields(_Request):
    model: str = Field(description="The served model name, as listed by GET /v1/models.")
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="0 samples greedily.")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: SeedInt | None = Field(
        None, description="Same seed, same request: same completion, whatever else runs."
    )
    stop: NonEmptyStr | Annotated[list[NonEmptyStr], Field(max_length=MAX_STOP)] | None = Field(
        None, description="Up to 4 strings; generation stops before the first one and drops it."
    )
    n: ChoiceCount = Field(1, description="Completions per prompt.")
    stream: bool = Field(False, description="Answer as server-sent events, one chunk per new text.")
    stream_options: StreamOptions | None = Field(None, description="Only with stream=true.")
    user: str | None = Field(None, description="End-user id; accepted and ignored.")
    presence_penalty: float = Field(0.0, ge=0.0, le=0.0, description="Accepted for compatibility: only 0.")
    frequency_penalty: float = Field(0.0, ge=0.0, le=0.0, description="Accepted for compatibility: only 0.")


# -- chat completions -------------------------------------------------------------------------


class TextContentPart(_Request):
    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    """One turn. `developer` is OpenAI's newer name for `system`; reasoning sent back is dropped."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | Annotated[list[TextContentPart], Field(max_length=MAX_CONTENT_PARTS)]
    name: str | None = None
    reasoning_content: str | None = Field(None, description="Accepted and never fed to the model.")
    reasoning: str | None = Field(None, description="Accepted and never fed to the model.")


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: PositiveInt | None = Field(
        None,
        description="Cap on completion tokens. Without a reasoning budget it counts the reasoning too "
        "(as OpenAI's API does); with one it caps the answer after the reasoning. Default: the rest "
        "of the context.",
    )
    max_completion_tokens: PositiveInt | None = Field(None, description="OpenAI's newer name for max_tokens.")
    max_reasoning_tokens: PositiveInt | None = Field(
        None,
        description="Reasoning budget (tinyseek extension): when the reasoning reaches this many tokens "
        "the server closes it with </think> and the answer gets its own max_tokens.",
    )
    logprobs: bool = Field(False, description="Return the log-probability of each completion token.")
    top_logprobs: TopLogprobCount | None = Field(None, description="Needs logprobs=true.")


# -- completions ------------------------------------------------------------------------------


PromptTexts = Annotated[list[str], Field(min_length=1, max_length=MAX_PROMPTS)]
PromptBatch = Annotated[list[TokenIds], Field(min_length=1, max_length=MAX_PROMPTS)]
_PromptForms = str | TokenIds | PromptTexts | PromptBatch
_PROMPT_FORMS = {
    form: TypeAdapter(annotation, config=ConfigDict(strict=True))
    for form, annotation in (("ids", TokenIds), ("texts", PromptTexts), ("batch", PromptBatch))
}


def _prompt(value: object) -> object:
    """A completion prompt, validated as the one form its first item shows. As a plain union every
    form's errors came back and the first was the string form's: a negative token id was answered
    "Input should be a valid string"; now it is "token ids are >= 0, got -2 at position 1", at
    `prompt[i]` for the i-th prompt of a batch. The schema still lists the four forms."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise PydanticCustomError(
            "prompt_type",
            "Input should be a string, a list of strings, a list of token ids or a list of those",
        )
    first = value[0] if value else None
    form = "texts" if isinstance(first, str) else "batch" if isinstance(first, list) else "ids"
    return _PROMPT_FORMS[form].validate_python(value)


class CompletionRequest(_SamplingFields):
    prompt: Annotated[
        _PromptForms, PlainValidator(_prompt), WithJsonSchema(TypeAdapter(_PromptForms).json_schema())
    ] = Field(
        description=f"A string, a list of strings, a list of token ids or a list of those (at most {MAX_PROMPTS})."
    )
    max_tokens: PositiveInt = Field(16, description="Cap on completion tokens (OpenAI's default: 16).")
    logprobs: CompletionLogprobCount | None = Field(
        None,
        description="Alternatives per token to return, beside the pick.",
    )
    echo: Literal[False] = Field(False, description="Echoing the prompt is not supported.")


# -- responses --------------------------------------------------------------------------------


class PromptTokensDetails(_Response):
    cached_tokens: int


class CompletionTokensDetails(_Response):
    reasoning_tokens: int


class Usage(_Response):
    prompt_tokens: int
    completion_tokens: int = Field(description="All generated tokens, reasoning included.")
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails
    prompt_cache_hit_tokens: int = Field(description="Prompt tokens served from the prefix cache.")
    prompt_cache_miss_tokens: int = Field(description="Prompt tokens computed for this request.")


class TopLogprob(_Response):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(_Response):
    content: list[TokenLogprob]


class AssistantMessage(_Response):
    role: Literal["assistant"] = "assistant"
    content: str | None
    reasoning_content: str | None = Field(description="The text before </think> (DeepSeek's name).")
    reasoning: str | None = Field(description="The same text under vLLM's and Ollama's name.")


class ChatChoice(_Response):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None
    finish_reason: FinishReason


class ChatCompletion(_Response):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None


class ChatDelta(_Response):
    """A chunk's delta carries the role (first chunk), or reasoning, or content: never both texts."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None


class ChatChunkChoice(_Response):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None = None
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(_Response):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class CompletionLogprobs(_Response):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] | None
    text_offset: list[int]


class CompletionChoice(_Response):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: FinishReason | None


class Completion(_Response):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None


class ModelCard(_Response):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "tinyseek"
    max_model_len: int = Field(description="Context length: prompt plus completion tokens.")


class ModelList(_Response):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(_Response):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(_Response):
    error: ErrorDetail


class Health(_Response):
    status: Literal["ok", "loading", "failed", "draining"]
