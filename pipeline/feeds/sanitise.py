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
MAX_URL = 2000  # longer links are tracking soup or attacks; no article needs one
_SPACE_RE = re.compile(r"\s+")
# Bidirectional controls (embeddings, overrides, isolates and the LRM/RLM/ALM marks) make
# "gpj.exe" read as "exe.jpg" or turn a headline around; a feed has no honest use for
# them in text we mail, and the script of the letters shows its own direction without.
_BIDI = "\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c"
_BIDI_RE = re.compile(f"[{_BIDI}]")
_ENTITY_RE = re.compile(r"&(?:#[0-9]+|#x[0-9a-f]+|[a-z][a-z0-9]*);", re.I)
_TAG_LIKE_RE = re.compile(r"<[/!?a-zA-Z][^>]*>?")
_UNSAFE_URL_CHARS = re.compile(r"[\x00-\x20\x7f<>\"`\\" + _BIDI + "]")
# A script scheme anywhere in a URL is an attack that a relative-link resolution turned
# into something that merely looks harmless; no article needs one.
_SCRIPT_SCHEME_RE = re.compile(r"(?:java|vb|live)script:", re.I)
_IMG_RE = re.compile(r"<img\b([^>]*)>", re.I)
_ATTR_RE = re.compile(r"""([a-zA-Z-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""")
# Beacons and counters that feeds put where an image would be.
_TRACKER_RE = re.compile(
    r"(?:^|[/.?&=_-])(?:pixel|beacon|tracking|tracker|spacer|blank|1x1|transparent)"
    r"(?:[/._?&=-]|$)|feeds\.feedburner\.com/~r/|/~/i/|stats\.wordpress\.com/b\.gif"
    r"|pixel\.wp\.com|doubleclick\.net|google-analytics\.com|/open\.gif|/o\.gif"
    r"|mf\.gif|/track/|[?&](?:w|width)=1&(?:h|height)=1\b", re.I)
_HREF_RE = re.compile(r'href="([^"]*)"')
# Block-level closing tags become spaces so "one.</p><p>Two" reads "one. Two" as text.
_BLOCK_END_RE = re.compile(r"<\s*(?:br|/p|/div|/li|/h[1-6]|/blockquote|/tr|/td)\b[^>]*>", re.I)


def strip_bidi(text: str) -> str:
    """`text` without bidirectional control characters (U+202A-E, U+2066-9, LRM, RLM, ALM)."""
    return _BIDI_RE.sub("", text)


def _absolute_links(cleaned: str, base: str) -> str:
    """Make every href absolute against the entry's base URL; neutralise ones that break."""
    def fix(m: re.Match[str]) -> str:
        href = html.unescape(m.group(1)).strip()
        if href.lower().startswith("mailto:") and not _UNSAFE_URL_CHARS.search(href):
            return f'href="{html.escape(href, quote=True)}"'
        full = safe_url(href, base)
        return f'href="{html.escape(full, quote=True)}"' if full else 'href="#"'
    return _HREF_RE.sub(fix, cleaned)


def clean_html(fragment: str, base: str = "") -> str:
    """Sanitise an HTML fragment with the allow-list; relative links made absolute."""
    cleaned = nh3.clean(fragment or "", tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                        url_schemes=URL_SCHEMES, link_rel="noopener noreferrer",
                        strip_comments=True)
    # After cleaning: nh3 turns `&#x202E;` into the character itself.
    cleaned = strip_bidi(cleaned)
    cleaned = _absolute_links(cleaned, base)
    if len(cleaned) > SUMMARY_HTML_MAX:
        # Too long to trim safely as markup: fall back to escaped plain text.
        cleaned = f"<p>{html.escape(trim(to_text(cleaned), SUMMARY_TEXT_MAX))}</p>"
    return cleaned


def to_text(fragment: str) -> str:
    """Plain text of an HTML fragment (every tag removed, entities decoded, spaces folded)."""
    text = fragment or ""
    # Decoding entities can reveal markup that was escaped once or twice
    # (`&amp;lt;script&gt;`); strip again until nothing tag-like is left, so stored text
    # never carries a tag even if some template forgets to escape it.
    for _ in range(4):
        spaced = _BLOCK_END_RE.sub(" ", text)
        text = html.unescape(nh3.clean(spaced, tags=set(), strip_comments=True))
        if not _TAG_LIKE_RE.search(text) and not _ENTITY_RE.search(text):
            break
    else:
        text = _TAG_LIKE_RE.sub("", text)
    # Bidi controls go last: an entity (`&#x202E;`) becomes one only when decoded.
    return _SPACE_RE.sub(" ", strip_bidi(text.replace("\x00", ""))).strip()


def plain_to_html(text: str) -> str:
    """A text/plain field as escaped HTML paragraphs (blank lines separate them)."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", strip_bidi(text or "")) if p.strip()]
    return "".join(f"<p>{html.escape(_SPACE_RE.sub(' ', p))}</p>" for p in paragraphs)


def trim(text: str, limit: int) -> str:
    """Cut text at a word boundary so it fits `limit` characters, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",.;:-– ")  # noqa: RUF001 (the en dash is meant)
    return cut + "…"


def safe_url(url: str, base: str = "") -> str:
    """An absolute http(s) URL, or '' when the value is anything else."""
    if not url or not isinstance(url, str):
        return ""
    # Spaces and quotes are common in sloppy feeds' links; encoded, they are harmless.
    url = url.strip().replace(" ", "%20").replace("'", "%27")
    try:
        full = urljoin(base, url) if base else url
        parts = urlsplit(full)
    except ValueError:  # e.g. an invalid IPv6 literal
        return ""
    # Anything that would break out of an attribute, or hide a second URL, is refused
    # rather than repaired: a feed has no honest reason to send it.
    if (parts.scheme not in ("http", "https") or not parts.hostname or len(full) > MAX_URL
            or _UNSAFE_URL_CHARS.search(full) or _SCRIPT_SCHEME_RE.search(full)):
        return ""
    return full


def is_tracking_image(url: str, width: object = None, height: object = None) -> bool:
    """True for images that exist to count readers (1x1 pixels, known beacon paths)."""
    for size in (width, height):
        try:
            if size not in (None, "") and int(str(size).strip().rstrip("px")) <= 2:
                return True
        except ValueError:
            pass
    return bool(_TRACKER_RE.search(url))


def content_images(fragment: str, base: str = "") -> list[str]:
    """Absolute http(s) URLs of the non-tracking <img> elements in a fragment, in order."""
    found = []
    for m in _IMG_RE.finditer(fragment or ""):
        attrs = {k.lower(): html.unescape(v1 or v2 or v3)
                 for k, v1, v2, v3 in _ATTR_RE.findall(m.group(1))}
        url = safe_url(attrs.get("src", ""), base)
        if url and not is_tracking_image(url, attrs.get("width"), attrs.get("height")):
            found.append(url)
    return found
