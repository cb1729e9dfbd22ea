"""Every string a page shows, in one catalogue per language (``ui/locales/<lang>.json``).

``t("train.start")`` looks the key up in the language chosen in the sidebar and falls back
to English, so a missing translation shows English rather than a key. The catalogues are
tested to hold the same keys and the same ``{placeholders}``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import streamlit as st

LANGUAGES = {"en": "English", "zh": "简体中文"}
LOCALES = Path(__file__).parent / "locales"


@cache
def catalogue(lang: str) -> dict[str, str]:
    return json.loads((LOCALES / f"{lang}.json").read_text(encoding="utf-8"))


def language() -> str:
    lang = st.session_state.get("lang") or st.query_params.get("lang", "en")
    return lang if lang in LANGUAGES else "en"


def t(key: str, **values) -> str:
    text = catalogue(language()).get(key) or catalogue("en")[key]
    return text.format(**values) if values else text


def t_or(key: str, default: str) -> str:
    """``t(key)`` where the catalogues have it, else ``default`` as it is (a user's own text)."""
    return catalogue(language()).get(key) or catalogue("en").get(key) or default


def class_name(name: str) -> str:
    """A class's name in the visitor's language: the bundled datasets' classes are in the
    catalogues (``class.<name>``); a user's folder names are shown as typed."""
    return t_or(f"class.{name}", name)


@cache
def imagenet_names(lang: str) -> tuple[str, ...]:
    """ImageNet-1k's 1,000 class names in ``lang``, in the classes' order (written for the lab;
    none for English, whose names are the weights' own)."""
    path = LOCALES / f"imagenet.{lang}.json"
    return tuple(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else ()


def imagenet_class(index: int, name: str) -> str:
    """ImageNet class ``index`` (its weights call it ``name``) in the visitor's language. By index,
    not name: "crane" is a bird at 134 and a machine at 517. Missing: the name, underscores as spaces."""
    names = imagenet_names(language())
    return names[index] if 0 <= index < len(names) and names[index] else name.replace("_", " ")


def option(value: str) -> str:
    """A TrainConfig choice (optimizer, schedule, augmentation, device) as the page shows it."""
    return t_or(f"option.{value}", value)
