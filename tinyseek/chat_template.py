"""Prompt formats: DeepSeek-R1's chat template and the R1-Zero plain-text template.

The chat template is one Jinja string, `R1_CHAT_TEMPLATE`. It is written into tokenizer_config.json
(so transformers' `apply_chat_template` uses it) and rendered here with jinja2 in the same kind of
sandboxed environment transformers uses (`trim_blocks`, `lstrip_blocks`), so Python and transformers
cannot drift apart: there is a single source of truth.

Behaviour (R1): BOS, then the system messages joined by blank lines; user turns `<｜User｜>{content}`;
assistant turns `<｜Assistant｜>{content}<｜end▁of▁sentence｜>` where an assistant message in the
history keeps only the text after its last `</think>` (reasoning is not fed back); the generation
prompt `<｜Assistant｜><think>\\n` makes the model open its reasoning at once. Unknown roles and
non-string contents are errors rather than silently dropped text.

R1-Zero trained a base model without chat tokens; `r1_zero_prompt` renders that plain-text template.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

R1_CHAT_TEMPLATE = (
    "{%- set ns = namespace(system='', first=true) -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- if ns.first -%}{%- set ns.system = message['content'] -%}{%- set ns.first = false -%}"
    "{%- else -%}{%- set ns.system = ns.system + '\\n\\n' + message['content'] -%}{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{{- bos_token + ns.system -}}"
    "{%- for message in messages -%}"
    "{%- if message['content'] is not string -%}"
    "{{- raise_exception('message content must be a string, got ' + (message['content'] | string)) -}}"
    "{%- elif message['role'] == 'user' -%}"
    "{{- '<｜User｜>' + message['content'] -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- '<｜Assistant｜>' + message['content'].split('</think>')[-1] + '<｜end▁of▁sentence｜>' -}}"
    "{%- elif message['role'] != 'system' -%}"
    "{{- raise_exception('unknown role ' + message['role'] + '; expected system, user or assistant') -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<｜Assistant｜><think>\\n' -}}{%- endif -%}"
)

R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user "
    "with the answer. The reasoning process and answer are enclosed within <think> </think> and "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> "
    "<answer> answer here </answer>. User: {prompt}. Assistant:"
)

# The R1-Zero template as a chat template, for a model trained with it and no chat tokens (what
# `tinyseek r1zero` writes into its model directory, so `tinyseek chat` and `serve` speak its format):
# the preamble once, each user turn as `User: {content}. Assistant:`, each earlier assistant turn as
# its text after `</think>`, and a generation prompt ` <think>\n` that opens the reasoning, as the
# R1 template's does. System messages have no place in the R1-Zero format and are an error.
_R1_ZERO_HEAD, _R1_ZERO_TURN = R1_ZERO_TEMPLATE.split("User: ", 1)
R1_ZERO_CHAT_TEMPLATE = (
    "{{- bos_token + " + repr(_R1_ZERO_HEAD) + " -}}"
    "{%- for message in messages -%}"
    "{%- if message['content'] is not string -%}"
    "{{- raise_exception('message content must be a string, got ' + (message['content'] | string)) -}}"
    "{%- elif message['role'] == 'user' -%}"
    "{{- 'User: ' + message['content'] + " + repr(_R1_ZERO_TURN.split("{prompt}", 1)[1]) + " -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- ' ' + message['content'].split('</think>')[-1].strip() + ' ' -}}"
    "{%- else -%}"
    "{{- raise_exception('the R1-Zero template has no ' + message['role'] + ' role; expected user or assistant') -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- ' <think>\\n' -}}{%- endif -%}"
)


class ChatTemplateError(ValueError):
    """A conversation the template cannot render (unknown role, non-string content)."""


@lru_cache(maxsize=8)
def _compile(template: str) -> Any:
    from jinja2.exceptions import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


def render_chat(
    messages: Sequence[Mapping[str, Any]],
    add_generation_prompt: bool = True,
    template: str = R1_CHAT_TEMPLATE,
    bos_token: str = BOS,
    eos_token: str = EOS,
) -> str:
    """Render a conversation to the exact string the model sees (same as transformers' template)."""
    from jinja2.exceptions import TemplateError

    for i, message in enumerate(messages):
        if "role" not in message or "content" not in message:
            raise ChatTemplateError(f"message {i} needs 'role' and 'content' keys, got {sorted(message)}")
    try:
        return str(
            _compile(template).render(
                messages=[dict(m) for m in messages],
                add_generation_prompt=add_generation_prompt,
                bos_token=bos_token,
                eos_token=eos_token,
            )
        )
    except TemplateError as err:
        raise ChatTemplateError(str(err)) from err


def r1_zero_prompt(prompt: str) -> str:
    """The R1-Zero template for base models: the question inside a fixed plain-text preamble."""
    return R1_ZERO_TEMPLATE.format(prompt=prompt)


def r1_zero_completion(reasoning: str, answer: str) -> str:
    """What an R1-Zero completion looks like after `r1_zero_prompt`: think tags, then answer tags."""
    return f" {THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n<answer>{answer}</answer>"
