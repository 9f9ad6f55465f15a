"""The detector's classes, in the order of the head's PROBS output (and of the weights file's rows)."""

from __future__ import annotations

BENIGN = "benign"
JAILBREAK = "jailbreak"
PROMPT_INJECTION = "prompt_injection"
DATA_EXFILTRATION = "data_exfiltration"
SYSTEM_PROMPT_LEAK = "system_prompt_leak"

THREATS: tuple[str, ...] = (JAILBREAK, PROMPT_INJECTION, DATA_EXFILTRATION, SYSTEM_PROMPT_LEAK)
CLASSES: tuple[str, ...] = (BENIGN, *THREATS)
