"""Learner-facing text in one message catalog per language: English (the source text in the
code and in kata.toml) and Simplified Chinese (``locale/zh_CN/LC_MESSAGES/katas.po``,
compiled to ``katas.mo`` next to it). Only the standard library's gettext is used at run time.

The language is chosen once per run (:func:`choose`, at configure time): ``--kata-lang``,
then ``$PYTEST_KATA_LANG``, then the ini key ``kata_lang``, then the locale (``LC_ALL``,
``LC_MESSAGES``, ``LANG``: Chinese gives zh-CN), else English. The choice is exported as
``PYTEST_KATA_LANG`` whenever the environment alone would not give it, so the test's sandbox
(forked), the learner's children (fork, spawn or forkserver) and xdist workers all speak the
same language. A process where nothing chose reads ``PYTEST_KATA_LANG``, then the locale.

Messages are looked up by their English text: ``_("the test did not finish after {seconds:g}
s").format(seconds=...)``, always with named placeholders, never an f-string inside ``_()``.
The failure class names (RACE, HANG, ...) stay English in every language.

Maintainers: after changing a message, update the catalog and compile it with Babel::

    pybabel extract -o /tmp/katas.pot plugin/pytest_katas        # then add the new msgids
    pybabel compile -D katas -d plugin/pytest_katas/locale

``tests/test_i18n.py`` fails when a msgid of the code or of a kata.toml has no translation,
or when the committed ``katas.mo`` is older than ``katas.po``.
"""

from __future__ import annotations

import gettext
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import pytest

__all__ = [
    "DOMAIN",
    "ENV",
    "LANGUAGES",
    "LOCALE_DIR",
    "N_",
    "_",
    "choose",
    "from_locale",
    "language",
    "ngettext",
    "parse_language",
    "use",
]

DOMAIN: Final = "katas"
ENV: Final = "PYTEST_KATA_LANG"
LOCALE_DIR: Final = Path(__file__).resolve().parent / "locale"
# The languages a learner can choose, and the gettext catalog of each (None: the source text).
LANGUAGES: Final[Mapping[str, str | None]] = {"en": None, "zh-CN": "zh_CN"}
_SPELLINGS: Final = {"en": "en", "zh-cn": "zh-CN", "zh_cn": "zh-CN"}

_language: str | None = None  # None: not chosen yet in this process
_translations: gettext.NullTranslations = gettext.NullTranslations()


def parse_language(text: str) -> str:
    """``en`` or ``zh-CN`` (also spelled ``zh_CN``, any case); ValueError otherwise."""
    value = _SPELLINGS.get(str(text).strip().lower())
    if value is None:
        raise ValueError("must be en (English) or zh-CN (Simplified Chinese)")
    return value


def from_locale(environ: Mapping[str, str] | None = None) -> str:
    """The language of the locale: the first of LC_ALL, LC_MESSAGES and LANG that is set
    decides, as in POSIX; a Chinese one (``zh_CN.UTF-8``, ``zh``...) gives zh-CN."""
    environ = os.environ if environ is None else environ
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name, "")
        if value:
            return "zh-CN" if value.lower().startswith("zh") else "en"
    return "en"


def _from_environment() -> str:
    """What a process where nothing chose speaks: $PYTEST_KATA_LANG, else the locale."""
    try:
        return parse_language(os.environ[ENV])
    except (KeyError, ValueError):
        return from_locale()


def use(lang: str) -> None:
    """Speak ``lang`` in this process from now on (and in the processes it forks)."""
    global _language, _translations
    catalog = LANGUAGES[parse_language(lang)]
    if catalog is None:
        _translations = gettext.NullTranslations()
    else:  # a missing .mo (a broken install) falls back to English rather than failing
        _translations = gettext.translation(
            DOMAIN, str(LOCALE_DIR), languages=[catalog], fallback=True
        )
    _language = parse_language(lang)


def language() -> str:
    """The language of this process: the one chosen, else what the environment says."""
    if _language is None:
        use(_from_environment())
    assert _language is not None
    return _language


def _(message: str) -> str:
    """``message`` (English) in this process's language."""
    if not message:  # gettext("") is the catalog's header, never a message
        return message
    language()
    return _translations.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """``singular`` or ``plural`` (English, chosen by ``n``) in this process's language."""
    language()
    return _translations.ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Marks ``message`` for the catalog without translating it (translate it where shown)."""
    return message


_CHOSEN_KEY: Final = "_kata_lang_chosen"


def choose(config: pytest.Config) -> str:
    """Choose this run's language from its settings (once per config), speak it, and export
    it to every process the run starts. Undone when the config is cleaned up."""
    from pytest_katas import settings

    chosen = getattr(config, _CHOSEN_KEY, None)
    if isinstance(chosen, str):
        return chosen
    lang = settings.of(config).lang
    before_env, before_lang = os.environ.get(ENV), _language
    if _from_environment() != lang:  # --kata-lang or the ini key: children cannot see those
        os.environ[ENV] = lang
    use(lang)
    setattr(config, _CHOSEN_KEY, lang)

    def restore() -> None:  # an in-process run (pytester) must not change its caller
        global _language
        if before_env is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before_env
        if before_lang is None:
            _language = None
        else:
            use(before_lang)

    config.add_cleanup(restore)
    return lang
