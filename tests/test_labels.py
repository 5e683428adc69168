"""Label masks: exactly the assistant answers plus their end-of-turn token are supervised."""

from __future__ import annotations

import pytest
from jinja2 import Template

from vlmtune.collation.labels import (
    IGNORE_INDEX,
    LabelError,
    map_expanded_offsets,
    render_supervised,
    token_labels,
)

EOT = "<end_of_utterance>"


def user(text: str, image: bool = False) -> dict:
    parts = [{"type": "image"}] if image else []
    return {"role": "user", "content": [*parts, {"type": "text", "text": text}]}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def system(text: str) -> dict:
    return {"role": "system", "content": [{"type": "text", "text": text}]}


def processor_renderer(processor):
    def render(messages, add_generation_prompt):
        return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    return render


def jinja_renderer(source: str):
    template = Template(source)

    def render(messages, add_generation_prompt):
        return template.render(messages=messages, add_generation_prompt=add_generation_prompt)

    return render


def spans_text(rendered) -> list[str]:
    return [rendered.text[start:end] for start, end in rendered.spans]


def test_smolvlm_single_turn_span(tiny_processor):
    rendered = render_supervised(
        [user("Which digit?", image=True), assistant("7")], processor_renderer(tiny_processor), [EOT]
    )
    assert rendered.text == f"<|im_start|>User:<image>Which digit?{EOT}\nAssistant: 7{EOT}\n"
    assert spans_text(rendered) == [f" 7{EOT}"]


def test_smolvlm_multi_turn_with_system(tiny_processor):
    messages = [system("Be brief."), user("First?", image=True), assistant("one"), user("Second?"), assistant("two")]
    rendered = render_supervised(messages, processor_renderer(tiny_processor), [EOT])
    assert spans_text(rendered) == [f" one{EOT}", f" two{EOT}"]
    assert "Be brief." not in "".join(spans_text(rendered))


def test_eot_rendered_with_next_message():
    # This template writes the end-of-turn token at the start of the following message.
    source = (
        "{% for m in messages %}{% if not loop.first %}</s>{% endif %}"
        "{{ m['role'] }}: {{ m['content'][0]['text'] }}{% endfor %}"
        "{% if add_generation_prompt %}</s>assistant:{% endif %}"
    )
    render = jinja_renderer(source)
    messages = [user("Hi"), assistant("Hello"), user("Bye"), assistant("Ciao")]
    rendered = render_supervised(messages, render, ["</s>"])
    assert spans_text(rendered) == [" Hello</s>", " Ciao</s>"]
    assert rendered.text.endswith("assistant: Ciao</s>")


def test_missing_eot_rejected():
    render = jinja_renderer("{% for m in messages %}{{ m['role'] }}: {{ m['content'][0]['text'] }}\n{% endfor %}")
    with pytest.raises(LabelError, match="no end-of-turn token"):
        render_supervised([user("Hi"), assistant("Hello")], render, ["</s>"], where="data.jsonl:3")


def test_no_stop_tokens_rejected():
    with pytest.raises(LabelError, match="eos_token_id"):
        render_supervised([user("Hi"), assistant("Hello")], jinja_renderer(""), [])


def test_token_labels_exact():
    ids = [10, 11, 12, 13, 14, 0]
    offsets = [(0, 5), (5, 9), (9, 10), (10, 14), (14, 15), (0, 0)]
    # Span covers characters 9..15: tokens starting at 9, 10 and 14.
    assert token_labels(ids, offsets, [(9, 15)]) == [IGNORE_INDEX, IGNORE_INDEX, 12, 13, 14, IGNORE_INDEX]


def test_map_expanded_offsets_exact():
    # Rendered "ab<image>cd": the 7-character placeholder at 2..9 expands to 12 characters at 2..14.
    replacements = [{"span": (2, 9), "new_span": (2, 14)}]
    offsets = [(0, 2), (2, 8), (8, 14), (14, 16), (0, 0)]
    assert map_expanded_offsets(offsets, replacements) == [(0, 2), None, None, (9, 11), None]


def test_map_expanded_offsets_two_images():
    replacements = [{"span": (0, 3), "new_span": (0, 5)}, {"span": (4, 7), "new_span": (6, 11)}]
    # Rendered "<i>x<i>y" (3+1+3+1 characters) expands to "IIIIIxIIIIIy".
    offsets = [(0, 5), (5, 6), (6, 11), (11, 12)]
    assert map_expanded_offsets(offsets, replacements) == [None, (3, 4), None, (7, 8)]
