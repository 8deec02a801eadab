"""Allow-list HTML sanitising and text extraction for untrusted feed content."""
from __future__ import annotations

import html
import re
from urllib.parse import urljoin, urlsplit

import nh3

# What may survive from a feed's HTML: text structure and links, nothing that runs,
# styles, embeds, submits or phones home. Images are dropped from summaries (tracking
# pixels hide there); the lead image is kept separately and shown by our own template.
ALLOWED_TAGS = {"p", "br", "a", "em", "strong", "b", "i", "ul", "ol", "li", "blockquote",
                "h3", "h4", "code"}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
URL_SCHEMES = {"http", "https", "mailto"}
TITLE_MAX = 200
SUMMARY_TEXT_MAX = 420
SUMMARY_HTML_MAX = 4000
_SPACE_RE = re.compile(r"\s+")
_HREF_RE = re.compile(r'href="([^"]*)"')
# Block-level closing tags become spaces so "one.</p><p>Two" reads "one. Two" as text.
_BLOCK_END_RE = re.compile(r"<\s*(?:br|/p|/div|/li|/h[1-6]|/blockquote|/tr|/td)\b[^>]*>", re.I)


def _absolute_links(cleaned: str, base: str) -> str:
    """Make every href absolute against the entry's base URL; drop ones that break."""
    def fix(m: re.Match[str]) -> str:
        href = html.unescape(m.group(1))
        full = urljoin(base, href) if base else href
        if urlsplit(full).scheme not in URL_SCHEMES:
            return 'href="#"'
        return f'href="{html.escape(full, quote=True)}"'
    return _HREF_RE.sub(fix, cleaned)


def clean_html(fragment: str, base: str = "") -> str:
    """Sanitise an HTML fragment with the allow-list; relative links made absolute."""
    cleaned = nh3.clean(fragment or "", tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                        url_schemes=URL_SCHEMES, link_rel="noopener noreferrer",
                        strip_comments=True)
    cleaned = _absolute_links(cleaned, base)
    if len(cleaned) > SUMMARY_HTML_MAX:
        # Too long to trim safely as markup: fall back to escaped plain text.
        cleaned = f"<p>{html.escape(trim(to_text(cleaned), SUMMARY_TEXT_MAX))}</p>"
    return cleaned


def to_text(fragment: str) -> str:
    """Plain text of an HTML fragment (every tag removed, entities decoded, spaces folded)."""
    spaced = _BLOCK_END_RE.sub(" ", fragment or "")
    stripped = nh3.clean(spaced, tags=set(), strip_comments=True)
    # nh3 keeps text escaped; decode twice catches feeds that double-escape (&amp;amp;).
    text = html.unescape(html.unescape(stripped))
    return _SPACE_RE.sub(" ", text).strip()


def trim(text: str, limit: int) -> str:
    """Cut text at a word boundary so it fits `limit` characters, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",.;:-– ")
    return cut + "…"


def safe_url(url: str, base: str = "") -> str:
    """An absolute http(s) URL, or '' when the value is anything else."""
    if not url:
        return ""
    full = urljoin(base, url.strip()) if base else url.strip()
    parts = urlsplit(full)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    return full
