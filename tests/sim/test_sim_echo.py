"""The ``echo`` scenario: the model says the prompt back, exactly, one piece per frame."""

from __future__ import annotations

from sluice.sim import SimSettings
from sluice.sim.scenarios import Scenario, prompt_digest, script
from sluice.sim.script import Finish, TextDelta
from sluice.sim.settings import resolve_params

PROMPT = "# Title\n\n<script>window.x = 1</script>\n\n```python\nprint('hi')\n```\n"


def test_echo_says_the_prompt_back_piece_by_piece() -> None:
    params = resolve_params(SimSettings(), {"x-sim-token-rate": "1000", "x-sim-ttft": "0"})
    steps = list(script(Scenario.ECHO, params, digest=prompt_digest("echo", PROMPT), prompt=PROMPT))
    texts = [e.text for step in steps for e in step.events if isinstance(e, TextDelta)]
    assert "".join(texts) == PROMPT
    assert len(texts) > 5  # one piece per frame, not one block
    assert isinstance(steps[-1].events[-1], Finish)
    assert steps[-1].events[-1].reason == "stop"


def test_echo_respects_max_tokens() -> None:
    params = resolve_params(SimSettings(), {"x-sim-token-rate": "1000", "x-sim-ttft": "0"})
    steps = script(Scenario.ECHO, params, digest=b"\0" * 16, max_tokens=3, prompt=PROMPT)
    events = [e for step in steps for e in step.events]
    assert sum(isinstance(e, TextDelta) for e in events) == 3
    assert events[-1] == Finish("length")
