"""Chat templates: how `/v1/chat/completions` turns a conversation into the prompt the model continues.

The template is, in order of precedence: the file given to ``cleangpt serve --chat-template FILE``; the
tokenizer's own (the `hf` tokenizer keeps the one its folder came with, ``chat_template.jinja`` or the
``chat_template`` of ``tokenizer_config.json``, and saves it with the checkpoint); otherwise `PLAIN_TEMPLATE`,
for base models, which
writes each turn as ``role: content`` on its own line and ends with ``assistant:`` for the model to go on.
Each is Jinja, rendered by transformers' sandboxed renderer (the one `apply_chat_template` uses), so a
template that came with a model cannot run code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cleangpt_core.serving.schemas import ChatMessage, RequestError

PLAIN_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


@dataclass(frozen=True)
class ChatTemplate:
    """A Jinja chat template and where it came from (shown by ``cleangpt serve`` at start)."""

    source: str
    origin: str

    def render(self, messages: list[ChatMessage], tokenizer: Any) -> str:
        """The prompt for `messages`, ending where the assistant's next turn begins."""
        from jinja2.exceptions import TemplateError
        from transformers.utils.chat_template_utils import render_jinja_template

        turns = [{"role": m.role, "content": _text(m, number)} for number, m in enumerate(messages)]
        specials = {name: getattr(tokenizer, name, None) for name in ("bos_token", "eos_token")}
        try:
            rendered, _ = render_jinja_template(
                conversations=[turns], chat_template=self.source, add_generation_prompt=True, **specials
            )
        except TemplateError as error:  # a template may refuse a conversation (say, roles not alternating)
            message = f"the chat template ({self.origin}) refuses these messages: {error}"
            raise RequestError(message, param="messages") from None
        return rendered[0]


PLAIN = ChatTemplate(PLAIN_TEMPLATE, "the plain role-prefixed template")


def _text(message: ChatMessage, number: int) -> str:
    """A message's text: its string, or its text parts joined (images and audio a text model cannot read)."""
    if isinstance(message.content, str):
        return message.content
    parts = []
    for part in message.content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise RequestError(
                f"'messages.{number}.content' holds a {part.get('type')!r} part; this model reads text parts only",
                param="messages",
            )
        parts.append(part["text"])
    return "".join(parts)


def load_chat_template(tokenizer: Any, override: Path | None = None) -> ChatTemplate:
    """The template `/v1/chat/completions` uses for `tokenizer` (see the module's docstring)."""
    if override is not None:
        return ChatTemplate(override.read_text(encoding="utf-8"), str(override))
    own = getattr(tokenizer, "chat_template", None)  # the hf tokenizer keeps the one its files came with
    if isinstance(own, str):
        return ChatTemplate(own, f"the {type(tokenizer).__name__}'s own chat template")
    return PLAIN
