"""The API answers in the language each request accepts (Accept-Language), over real
TCP: the same request in English and in Chinese, and many at once in both, none taking
another's language."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.api_helpers import client, error_of, served, session_secret
from tests.i18n_helpers import assert_chinese

ENGLISH = "log in first: this request carries no session and no API token"


@pytest.fixture
def base(app: Any) -> Iterator[str]:
    with served(app.settings) as url:
        yield url


def _error(base: str, language: str | None, path: str = "/api/v1/recordings") -> Any:
    headers = {"Accept-Language": language} if language else {}
    with client(base, **headers) as http:
        return error_of(http.get(path))


def test_the_same_request_in_english_and_in_chinese(base: str) -> None:
    english = _error(base, "en-US,en;q=0.9")
    assert english["message"] == ENGLISH
    chinese = _error(base, "zh-CN,zh;q=0.9,en;q=0.8")
    assert chinese["message"] == "请先登录：本请求既无会话也无 API 令牌"
    assert_chinese(chinese["message"])
    assert chinese["hint"].startswith("发送")
    # The highest q wins; a language the API does not speak is passed over.
    assert _error(base, "en;q=0.3, zh;q=0.7")["message"] == chinese["message"]
    assert _error(base, "fr, en;q=0.5")["message"] == ENGLISH
    # Without the header: the server's language (the tests run it in English).
    assert _error(base, None)["message"] == ENGLISH


def test_a_refusal_in_the_request_language(app: Any, base: str) -> None:
    # The auditor changes nothing: the policy's refusal, in each reader's language.
    secret = session_secret(app, "auditor", name="audit1")
    refusals = {}
    for lang in ("zh", "en"):
        with client(base, Authorization=f"Bearer {secret}", **{"Accept-Language": lang}) as http:
            r = http.post("/api/v1/cases", json={"number": "X-1"})
        assert r.status_code == 403
        refusals[lang] = error_of(r)
    assert refusals["en"]["message"].startswith("audit1 may not change cases (case.change)")
    assert refusals["zh"]["message"] != refusals["en"]["message"]
    assert_chinese(refusals["zh"]["message"])


def test_requests_at_once_each_keep_their_language(base: str) -> None:
    languages = ["en", "zh"] * 20
    with ThreadPoolExecutor(max_workers=8) as pool:
        messages = list(pool.map(lambda lang: _error(base, lang)["message"], languages))
    for lang, message in zip(languages, messages, strict=True):
        if lang == "en":
            assert message == ENGLISH
        else:
            assert message == "请先登录：本请求既无会话也无 API 令牌"
