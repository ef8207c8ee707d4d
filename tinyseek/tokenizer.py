"""Tokenizer: a thin layer over HF `tokenizers`, in DeepSeek's file format.

Design choices:
- Files are `tokenizer.json` + `tokenizer_config.json`, exactly what DeepSeek ships and what
  `transformers.AutoTokenizer` reads. Special-token names may be strings or `AddedToken` dicts.
- BOS comes from tokenizer.json's post-processor (a TemplateProcessing, as in DeepSeek's files),
  which is what transformers 5 applies too; `add_bos_token` in the config is informational only.
- Files we write declare `tokenizer_class: PreTrainedTokenizerFast` (the plain `tokenizer.json`
  backend) rather than DeepSeek's `LlamaTokenizerFast`, which transformers 5 may rebuild with a
  SentencePiece-style pre-tokenizer that does not match the byte-level vocabulary.
- Training is byte-level BPE with every digit its own pre-token, so numbers are read digit by digit
  (what makes column arithmetic learnable for tiny models). A space before a digit stays with it
  (`" 96"` is `Ġ9`, `6`): the leading digit of a number is then a token of its own kind, next to
  the word before it. With a bare `Ġ` token before every number, a tiny model had to find the
  first operand's leading digit two tokens past `is` behind the most common token of the corpus,
  and it learned to read that digit last and, in one r1zero seed of three, never. With `full_byte_alphabet=False` only the
  bytes seen in the corpus enter the vocabulary: a 100-500 token vocabulary for the laptop demo;
  other bytes then map to an `<｜▁unk▁｜>` token instead of vanishing silently.
- The chat template lives in `tinyseek.chat_template`; it is copied into tokenizer_config.json.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tinyseek.chat_template import (
    ASSISTANT,
    BOS,
    EOS,
    R1_CHAT_TEMPLATE,
    THINK_CLOSE,
    THINK_OPEN,
    USER,
    render_chat,
)

log = logging.getLogger(__name__)

PAD = "<｜▁pad▁｜>"
UNK = "<｜▁unk▁｜>"  # only in corpus-alphabet vocabularies
TOOL_TOKENS = (
    "<｜tool▁calls▁begin｜>",
    "<｜tool▁calls▁end｜>",
    "<｜tool▁call▁begin｜>",
    "<｜tool▁call▁end｜>",
    "<｜tool▁outputs▁begin｜>",
    "<｜tool▁outputs▁end｜>",
    "<｜tool▁output▁begin｜>",
    "<｜tool▁output▁end｜>",
    "<｜tool▁sep｜>",
)
# Order fixes the low ids: BOS 0, EOS 1, PAD 2, then the chat and tool markers.
SPECIAL_TOKENS = (BOS, EOS, PAD, USER, ASSISTANT, *TOOL_TOKENS)
# Single tokens that are text to users, as in DeepSeek's files: they survive skip_special_tokens.
TEXT_MARKERS = (THINK_OPEN, THINK_CLOSE)
_DIGIT_PATTERN = r" ?\p{N}"


def _token_text(value: Any) -> str | None:
    """A special token as written in tokenizer_config.json: a string, an AddedToken dict or null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return str(value["content"])
    raise ValueError(f"special token must be a string or an AddedToken dict, got {value!r}")


class Tokenizer:
    """Encode/decode text and render chats; same ids as `transformers.AutoTokenizer` on these files."""

    def __init__(self, backend: Any, config: Mapping[str, Any]) -> None:
        self.backend = backend
        self.config = dict(config)
        self.bos_token = _token_text(config.get("bos_token"))
        self.eos_token = _token_text(config.get("eos_token"))
        self.pad_token = _token_text(config.get("pad_token"))
        self.chat_template: str | None = config.get("chat_template")
        for name in ("bos_token", "eos_token", "pad_token"):
            token = getattr(self, name)
            if token is not None and backend.token_to_id(token) is None:
                raise ValueError(f"{name} {token!r} from tokenizer_config.json is not in the vocabulary")

    # -- files -------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> Tokenizer:
        """Load tokenizer.json + tokenizer_config.json from a model directory."""
        from tokenizers import Tokenizer as Backend

        directory = Path(directory)
        tokenizer_file = directory / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise FileNotFoundError(f"{tokenizer_file} not found: a tokenizer directory needs tokenizer.json")
        config_file = directory / "tokenizer_config.json"
        config: dict[str, Any] = {}
        if config_file.is_file():
            try:
                config = json.loads(config_file.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(f"{config_file}: invalid JSON ({err})") from err
        return cls(Backend.from_file(str(tokenizer_file)), config)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write tokenizer.json + tokenizer_config.json (loadable by transformers.AutoTokenizer)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(directory / "tokenizer.json"))
        (directory / "tokenizer_config.json").write_text(
            json.dumps(self.config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )

    # -- training ----------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        full_byte_alphabet: bool = True,
        min_frequency: int = 2,
        model_max_length: int = 16384,
    ) -> Tokenizer:
        """Train a byte-level BPE with DeepSeek's special tokens and the R1 chat template.

        `vocab_size` counts special tokens. With `full_byte_alphabet` all 256 bytes are in the
        vocabulary (any text encodes); without it only the corpus's bytes are (tiny demo vocabularies).
        """
        from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors, trainers
        from tokenizers import Tokenizer as Backend

        specials = list(SPECIAL_TOKENS) if full_byte_alphabet else [*SPECIAL_TOKENS, UNK]
        floor = len(specials) + len(TEXT_MARKERS) + (256 if full_byte_alphabet else 1)
        if vocab_size < floor:
            raise ValueError(f"vocab_size {vocab_size} is too small: need at least {floor} for this alphabet")
        backend = Backend(models.BPE(unk_token=None if full_byte_alphabet else UNK))
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_DIGIT_PATTERN), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
        backend.decoder = decoders.ByteLevel()
        backend.post_processor = processors.TemplateProcessing(
            single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1", special_tokens=[(BOS, 0)]
        )
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size - len(TEXT_MARKERS),
            min_frequency=min_frequency,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if full_byte_alphabet else [],
            show_progress=False,
        )
        backend.train_from_iterator(texts, trainer=trainer)
        backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in TEXT_MARKERS])
        log.info("trained byte-level BPE: %d tokens", backend.get_vocab_size())
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": BOS,
            "eos_token": EOS,
            "pad_token": PAD,
            "unk_token": None if full_byte_alphabet else UNK,
            "add_bos_token": True,
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,
            "model_max_length": model_max_length,
            "chat_template": R1_CHAT_TEMPLATE,
        }
        return cls(backend, config)

    # -- encoding ----------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return int(self.backend.get_vocab_size(with_added_tokens=True))

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self.backend.token_to_id(token)

    @property
    def bos_token_id(self) -> int | None:
        return self._id(self.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        return self._id(self.eos_token)

    @property
    def pad_token_id(self) -> int | None:
        return self._id(self.pad_token)

    def token_to_id(self, token: str) -> int:
        token_id = self.backend.token_to_id(token)
        if token_id is None:
            raise KeyError(f"token {token!r} is not in the vocabulary")
        return int(token_id)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids; `add_special_tokens` runs the post-processor (BOS first for DeepSeek's files)."""
        return list(self.backend.encode(text, add_special_tokens=add_special_tokens).ids)

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = True) -> list[list[int]]:
        return [
            list(e.ids) for e in self.backend.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        ]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return str(self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = True,
        tokenize: bool = False,
    ) -> str | list[int]:
        """Render a conversation with the config's chat template; ids never get a second BOS."""
        if self.chat_template is None:
            raise ValueError("this tokenizer has no chat_template in tokenizer_config.json")
        text = render_chat(
            messages,
            add_generation_prompt=add_generation_prompt,
            template=self.chat_template,
            bos_token=self.bos_token or "",
            eos_token=self.eos_token or "",
        )
        return self.encode(text, add_special_tokens=False) if tokenize else text
