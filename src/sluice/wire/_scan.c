/* sluice.wire._scan: the commonest upstream frame, recognised and decoded in one pass.
 *
 * A streamed answer is mostly body pieces that each hold one SSE event carrying one text (or
 * reasoning) delta and nothing else. For such a piece, chat_delta(), messages_delta() and
 * responses_delta() return that delta as an event, made by calling the given event class;
 * for any other piece they return None, and the caller takes the general path (the SSE
 * decoder, orjson, the adapter's fold). For every piece they accept, the general path gives
 * that same one event: the tests and the fuzzer hold them to it.
 *
 * What is accepted is narrow on purpose; whatever the general path treats in a way not
 * modelled here is refused:
 *
 * - the SSE: exactly one event, a "data:" line (after an optional "event:" line) and the
 *   blank line, LF line ends only (sluice.sse's one-event fast path takes the same shapes);
 * - the JSON: an object, valid by RFC 8259 as a whole (every value is walked and checked,
 *   strings as UTF-8 with their escapes), nested at most MAX_DEPTH deep; numbers only in the
 *   forms every reader agrees on (at most 18 integer digits, an exponent of at most two);
 *   the keys of the objects whose fields are read, without escapes (a key written
 *   "cont\u0065nt" is refused, not unescaped);
 * - the fields the adapter reads, each present at most once and of the one type that makes
 *   the frame a plain delta (a finish reason, usage, an error or a tool call is refused);
 * - no secret in the delta's text: a text that holds one of the keys given as the optional
 *   fourth argument (the configured provider keys), or may hold a token of a known provider
 *   (../_tokens.h), is refused, so that the general path redacts it (sluice.redact). The
 *   piece's other fields are not looked at here (docs/security.md says why).
 *
 * No I/O, no state: each call looks at one bytes object.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "../_tokens.h"

typedef const unsigned char *cursor;

#define NO (-1) /* not a frame this module takes: the general path decides */
#define MAX_DEPTH 32
/* a decoded string up to this size is unescaped on the stack */
#define STACK_TEXT 512

typedef struct {
    cursor p;
    cursor end;
    int depth;
} Scan;

/* A string value's bytes between its quotes; "escaped" if it holds a backslash. */
typedef struct {
    cursor start;
    Py_ssize_t len;
    int escaped;
    int present;
} Span;

static inline void
skip_space(Scan *s)
{
    cursor p = s->p, end = s->end;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    s->p = p;
}

static inline int
at(Scan *s, unsigned char c)
{
    return s->p < s->end && *s->p == c;
}

static int
hex4(cursor p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* The length of the well-formed UTF-8 sequence at p (Unicode, table 3-7), or 0. */
static int
utf8_length(cursor p, cursor end)
{
    unsigned char c = p[0];
    Py_ssize_t left = end - p;
    if (c >= 0xC2 && c <= 0xDF) {
        return left >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (left < 3 || (p[2] & 0xC0) != 0x80)
            return 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xE0)
            lo = 0xA0; /* no overlong forms */
        else if (c == 0xED)
            hi = 0x9F; /* no surrogates */
        return p[1] >= lo && p[1] <= hi ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (left < 4 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xF0)
            lo = 0x90; /* no overlong forms */
        else if (c == 0xF4)
            hi = 0x8F; /* nothing past U+10FFFF */
        return p[1] >= lo && p[1] <= hi ? 4 : 0;
    }
    return 0;
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Past the run of plain ASCII at p inside a string: bytes other than '"', '\\', the
 * control characters and the bytes of multi-byte characters. Eight bytes at a time while
 * none of them ends the run (the zero-byte test of "Bit Twiddling Hacks", on the word
 * xor'ed with each stop byte, and on the word less 0x20 for the control characters); a
 * word that holds a stop byte is finished a byte at a time. */
static inline cursor
plain_run(cursor p, cursor end)
{
    while (end - p >= 8) {
        uint64_t x, quote, slash;
        memcpy(&x, p, 8);
        quote = x ^ (ONES * '"');
        slash = x ^ (ONES * '\\');
        uint64_t stop = ((quote - ONES) & ~quote) | ((slash - ONES) & ~slash) |
                        ((x - ONES * 0x20) & ~x) | x;
        if (stop & HIGHS)
            break;
        p += 8;
    }
    while (p < end && *p >= 0x20 && *p != '"' && *p != '\\' && *p < 0x80)
        p++;
    return p;
}

/* A string at s->p (its opening quote). Escapes are checked, not decoded: a \u escape of a
 * surrogate must be a high one followed by a low one (a lone surrogate is refused). */
static int
scan_string(Scan *s, Span *out)
{
    cursor p = s->p + 1, end = s->end;
    int escaped = 0;
    out->start = p;
    for (;;) {
        p = plain_run(p, end);
        if (p >= end)
            return NO;
        unsigned char c = *p;
        if (c == '"')
            break;
        if (c < 0x20)
            return NO; /* a raw control character */
        if (c == '\\') {
            escaped = 1;
            if (end - p < 2)
                return NO;
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                continue;
            case 'u': {
                if (end - p < 6)
                    return NO;
                int unit = hex4(p + 2);
                if (unit < 0)
                    return NO;
                p += 6;
                if (unit >= 0xD800 && unit <= 0xDBFF) {
                    if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
                        return NO;
                    int low = hex4(p + 2);
                    if (low < 0xDC00 || low > 0xDFFF)
                        return NO;
                    p += 6;
                }
                else if (unit >= 0xDC00 && unit <= 0xDFFF) {
                    return NO;
                }
                continue;
            }
            default:
                return NO;
            }
        }
        int n = utf8_length(p, end);
        if (n == 0)
            return NO;
        p += n;
    }
    out->len = p - out->start;
    out->escaped = escaped;
    out->present = 1;
    s->p = p + 1;
    return 0;
}

static inline int
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* A number at s->p. *integer says it has no fraction and no exponent; *value is then its
 * value (at most 18 digits: it fits). */
static int
scan_number(Scan *s, int *integer, long long *value)
{
    cursor p = s->p, end = s->end, digits;
    int negative = 0;
    if (p < end && *p == '-') {
        negative = 1;
        p++;
    }
    if (p >= end)
        return NO;
    digits = p;
    if (*p == '0') {
        p++;
    }
    else if (*p >= '1' && *p <= '9') {
        while (p < end && is_digit(*p))
            p++;
        if (p - digits > 18)
            return NO;
    }
    else {
        return NO;
    }
    long long v = 0;
    for (cursor d = digits; d < p; d++)
        v = v * 10 + (*d - '0');
    int whole = 1;
    if (p < end && *p == '.') {
        cursor first = ++p;
        while (p < end && is_digit(*p))
            p++;
        if (p == first || p - first > 30)
            return NO;
        whole = 0;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        cursor first = p;
        while (p < end && is_digit(*p))
            p++;
        if (p == first || p - first > 2)
            return NO;
        whole = 0;
    }
    s->p = p;
    *integer = whole;
    *value = negative ? -v : v;
    return 0;
}

static int
scan_word(Scan *s, const char *word, Py_ssize_t n)
{
    if (s->end - s->p < n || memcmp(s->p, word, n) != 0)
        return NO;
    s->p += n;
    return 0;
}

static int scan_value(Scan *s);

/* Members of an object, one at a time: begin at its '{' with *first = 1; each call reads the
 * separator, then the next key and its ':' into *key and returns 1, or reads the closing '}'
 * and returns 0. Where the keys are read (``plain``), a key with an escape is refused: it is
 * compared as written, not unescaped. */
static int
object_member(Scan *s, int *first, Span *key, int plain)
{
    skip_space(s);
    if (*first) {
        *first = 0;
        if (++s->depth > MAX_DEPTH || !at(s, '{'))
            return NO;
        s->p++;
        skip_space(s);
        if (at(s, '}')) {
            s->p++;
            s->depth--;
            return 0;
        }
    }
    else if (at(s, ',')) {
        s->p++;
        skip_space(s);
    }
    else if (at(s, '}')) {
        s->p++;
        s->depth--;
        return 0;
    }
    else {
        return NO;
    }
    if (!at(s, '"') || scan_string(s, key) < 0 || (plain && key->escaped))
        return NO;
    skip_space(s);
    if (!at(s, ':'))
        return NO;
    s->p++;
    skip_space(s);
    return 1;
}

/* The next member of an object whose keys are read. */
static inline int
next_key(Scan *s, int *first, Span *key)
{
    return object_member(s, first, key, 1);
}

static int
scan_array(Scan *s)
{
    if (++s->depth > MAX_DEPTH)
        return NO;
    s->p++; /* '[' */
    skip_space(s);
    if (at(s, ']')) {
        s->p++;
        s->depth--;
        return 0;
    }
    for (;;) {
        if (scan_value(s) < 0)
            return NO;
        skip_space(s);
        if (at(s, ',')) {
            s->p++;
            continue;
        }
        if (at(s, ']')) {
            s->p++;
            s->depth--;
            return 0;
        }
        return NO;
    }
}

/* Any value at s->p (after its leading space): walked and checked, nothing kept. */
static int
scan_value(Scan *s)
{
    skip_space(s);
    if (s->p >= s->end)
        return NO;
    switch (*s->p) {
    case '"': {
        Span ignored;
        return scan_string(s, &ignored);
    }
    case '{': {
        int first = 1, more;
        Span key;
        while ((more = object_member(s, &first, &key, 0)) == 1) {
            if (scan_value(s) < 0)
                return NO;
        }
        return more;
    }
    case '[':
        return scan_array(s);
    case 't':
        return scan_word(s, "true", 4);
    case 'f':
        return scan_word(s, "false", 5);
    case 'n':
        return scan_word(s, "null", 4);
    default: {
        int integer;
        long long value;
        return scan_number(s, &integer, &value);
    }
    }
}

static inline int
key_is(const Span *key, const char *name, Py_ssize_t n)
{
    return key->len == n && memcmp(key->start, name, n) == 0;
}

#define KEY(key, literal) key_is((key), literal, (Py_ssize_t)sizeof(literal) - 1)

/* A value that must be null, or a string (kept in *out). */
static int
null_or_string(Scan *s, Span *out)
{
    if (out->present)
        return NO; /* given twice */
    if (at(s, '"'))
        return scan_string(s, out);
    if (scan_word(s, "null", 4) < 0)
        return NO;
    out->present = 1;
    out->len = 0;
    out->escaped = 0;
    return 0;
}

/* A value that must be null, once (``*seen`` counts it). */
static int
null_once(Scan *s, int *seen)
{
    if ((*seen)++)
        return NO;
    return scan_word(s, "null", 4);
}

/* An integer written plainly (no fraction, no exponent), once. */
static int
integer_once(Scan *s, int *seen, long long *value)
{
    int integer;
    if ((*seen)++ || scan_number(s, &integer, value) < 0 || !integer)
        return NO;
    return 0;
}

/* A string without escapes, once, compared to each of the names given: returns the
 * 1-based position of the one it equals, or NO. */
static int
name_once(Scan *s, int *seen, const char *const *names)
{
    Span word = {0};
    if ((*seen)++ || !at(s, '"') || scan_string(s, &word) < 0 || word.escaped)
        return NO;
    for (int i = 0; names[i] != NULL; i++) {
        if (key_is(&word, names[i], (Py_ssize_t)strlen(names[i])))
            return i + 1;
    }
    return NO;
}

/* The JSON ends here: only space may follow the top-level object. */
static int
at_end(Scan *s)
{
    skip_space(s);
    return s->p == s->end ? 0 : NO;
}

/* -- the SSE frame ------------------------------------------------------------------------- */

/* The piece as one SSE event: an optional "event:" line, a "data:" line, a blank line, LF
 * line ends only (as sluice.sse's _single_event). Sets the event name's bytes (name_len -1
 * when there is no event line) and the data's. */
static int
one_event(cursor chunk, Py_ssize_t len, cursor *name, Py_ssize_t *name_len, cursor *data,
          Py_ssize_t *data_len)
{
    if (len < 7 || chunk[len - 1] != '\n' || memchr(chunk, '\r', len) != NULL)
        return NO;
    Py_ssize_t end = len - 2;
    cursor lf = memchr(chunk, '\n', len);
    Py_ssize_t first = lf - chunk;
    Py_ssize_t line = 0; /* where the data line starts */
    if (first == end) {
        *name_len = -1;
    }
    else {
        if (memcmp(chunk, "event:", 6) != 0)
            return NO;
        Py_ssize_t start = chunk[6] == ' ' ? 7 : 6;
        *name = chunk + start;
        *name_len = first - start;
        if (*name_len < 0)
            return NO;
        line = first + 1;
        cursor second = line < len ? memchr(chunk + line, '\n', len - line) : NULL;
        if (second == NULL || second - chunk != end)
            return NO;
    }
    if (end - line < 5 || memcmp(chunk + line, "data:", 5) != 0)
        return NO;
    Py_ssize_t start = line + (line + 5 < end && chunk[line + 5] == ' ' ? 6 : 5);
    *data = chunk + start;
    *data_len = end - start;
    return 0;
}

/* -- the events ---------------------------------------------------------------------------- */

/* A checked string's text with its escapes undone, as UTF-8 into out (never longer than the
 * escaped text); returns its length. */
static Py_ssize_t
unescape(const Span *span, char *out)
{
    char *w = out;
    cursor p = span->start, end = span->start + span->len;
    while (p < end) {
        if (*p != '\\') {
            *w++ = (char)*p++;
            continue;
        }
        unsigned char c = p[1];
        p += 2;
        switch (c) {
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            long cp = hex4(p);
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) { /* checked: a low surrogate follows */
                cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4(p + 2) - 0xDC00);
                p += 6;
            }
            if (cp < 0x80) {
                *w++ = (char)cp;
            }
            else if (cp < 0x800) {
                *w++ = (char)(0xC0 | (cp >> 6));
                *w++ = (char)(0x80 | (cp & 0x3F));
            }
            else if (cp < 0x10000) {
                *w++ = (char)(0xE0 | (cp >> 12));
                *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *w++ = (char)(0x80 | (cp & 0x3F));
            }
            else {
                *w++ = (char)(0xF0 | (cp >> 18));
                *w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
                *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *w++ = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: /* '"', '\\', '/' */
            *w++ = (char)c;
        }
    }
    return w - out;
}

static PyObject *
decode_text(const Span *span)
{
    if (!span->escaped)
        return PyUnicode_DecodeUTF8((const char *)span->start, span->len, NULL);
    if (span->len <= STACK_TEXT) {
        char stack[STACK_TEXT];
        Py_ssize_t n = unescape(span, stack);
        return PyUnicode_DecodeUTF8(stack, n, NULL);
    }
    char *buffer = PyMem_Malloc(span->len);
    if (buffer == NULL)
        return PyErr_NoMemory();
    PyObject *text = PyUnicode_DecodeUTF8(buffer, unescape(span, buffer), NULL);
    PyMem_Free(buffer);
    return text;
}

/* cls(text) or cls(text, index); None when the text holds one of keys (a tuple of bytes, or
 * NULL) or may hold a token (../_tokens.h) */
static PyObject *
make_event(PyObject *cls, const Span *span, int with_index, long long index, PyObject *keys)
{
    if (keys != NULL) {
        int keyed = holds_key(span->start, span->len, keys);
        if (keyed)
            return keyed < 0 ? NULL : Py_NewRef(Py_None);
    }
    if (holds_token(span->start, span->len))
        Py_RETURN_NONE;
    PyObject *args[2];
    args[0] = decode_text(span);
    if (args[0] == NULL)
        return NULL;
    Py_ssize_t n = 1;
    if (with_index) {
        args[1] = PyLong_FromLongLong(index);
        if (args[1] == NULL) {
            Py_DECREF(args[0]);
            return NULL;
        }
        n = 2;
    }
    PyObject *event = PyObject_Vectorcall(cls, args, n, NULL);
    Py_DECREF(args[0]);
    if (with_index)
        Py_DECREF(args[1]);
    return event;
}

#define ERROR (-2) /* an exception is set */

/* What the three entry points begin with: the arguments checked, the piece taken as one SSE
 * event, the scan set on its data. Returns 0, NO (not such a piece) or ERROR. */
static int
begin(PyObject *const *args, Py_ssize_t nargs, const char *function, Scan *s, cursor *name,
      Py_ssize_t *name_len)
{
    if (nargs != 3 && nargs != 4) {
        PyErr_Format(PyExc_TypeError, "%s() takes 3 or 4 arguments (%zd given)", function,
                     nargs);
        return ERROR;
    }
    if (!PyBytes_CheckExact(args[0])) {
        PyErr_Format(PyExc_TypeError, "%s() takes bytes, not %.100s", function,
                     Py_TYPE(args[0])->tp_name);
        return ERROR;
    }
    cursor data;
    Py_ssize_t data_len;
    if (one_event((cursor)PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]), name,
                  name_len, &data, &data_len) < 0)
        return NO;
    s->p = data;
    s->end = data + data_len;
    s->depth = 0;
    return 0;
}

/* The start of an entry point: returns from it with NULL or None unless the piece is one
 * SSE event. */
#define BEGIN(function, s, name, name_len)                                                  \
    do {                                                                                    \
        int begun = begin(args, nargs, function, (s), (name), (name_len));                  \
        if (begun == ERROR)                                                                 \
            return NULL;                                                                    \
        if (begun == NO)                                                                    \
            Py_RETURN_NONE;                                                                 \
    } while (0)

/* the optional fourth argument: the keys no accepted text may hold */
#define KEYS (nargs == 4 ? args[3] : NULL)

/* -- OpenAI Chat Completions --------------------------------------------------------------- */

typedef struct {
    Span content, reasoning_content, reasoning;
} ChatDelta;

static int
chat_delta_object(Scan *s, ChatDelta *delta)
{
    int first = 1, more, tool_calls = 0;
    Span key;
    while ((more = next_key(s, &first, &key)) == 1) {
        int r;
        if (KEY(&key, "content"))
            r = null_or_string(s, &delta->content);
        else if (KEY(&key, "reasoning_content"))
            r = null_or_string(s, &delta->reasoning_content);
        else if (KEY(&key, "reasoning"))
            r = null_or_string(s, &delta->reasoning);
        else if (KEY(&key, "tool_calls"))
            r = null_once(s, &tool_calls);
        else
            r = scan_value(s);
        if (r < 0)
            return NO;
    }
    return more;
}

static int
chat_choice(Scan *s, ChatDelta *delta)
{
    int first = 1, more, index = 0, has_delta = 0, finish = 0;
    long long value;
    Span key;
    while ((more = next_key(s, &first, &key)) == 1) {
        int r;
        if (KEY(&key, "index"))
            r = integer_once(s, &index, &value) < 0 || value != 0 ? NO : 0;
        else if (KEY(&key, "delta"))
            r = has_delta++ ? NO : chat_delta_object(s, delta);
        else if (KEY(&key, "finish_reason"))
            r = null_once(s, &finish);
        else
            r = scan_value(s);
        if (r < 0)
            return NO;
    }
    return more < 0 || !has_delta ? NO : 0;
}

/* The adapter's rule: reasoning is ``reasoning_content`` or else ``reasoning``, content is
 * the text; a frame with both, or with neither, is not this module's. */
static PyObject *
chat_delta(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Scan s;
    cursor name;
    Py_ssize_t name_len;
    BEGIN("chat_delta", &s, &name, &name_len);
    ChatDelta delta;
    memset(&delta, 0, sizeof delta);
    int first = 1, more, choices = 0, usage = 0, error = 0;
    Span key;
    while ((more = next_key(&s, &first, &key)) == 1) {
        int r;
        if (KEY(&key, "choices")) {
            /* an array whose first element is choice 0; the rest is walked */
            r = NO;
            if (!choices++ && at(&s, '[') && ++s.depth <= MAX_DEPTH) {
                s.p++;
                skip_space(&s);
                if (at(&s, '{') && chat_choice(&s, &delta) == 0) {
                    int walked = 0;
                    skip_space(&s);
                    while (walked == 0 && at(&s, ',')) {
                        s.p++;
                        walked = scan_value(&s);
                        skip_space(&s);
                    }
                    if (walked == 0 && at(&s, ']')) {
                        s.p++;
                        s.depth--;
                        r = 0;
                    }
                }
            }
        }
        else if (KEY(&key, "usage"))
            r = null_once(&s, &usage);
        else if (KEY(&key, "error"))
            r = null_once(&s, &error);
        else
            r = scan_value(&s);
        if (r < 0)
            Py_RETURN_NONE;
    }
    if (more < 0 || !choices || at_end(&s) < 0)
        Py_RETURN_NONE;
    const Span *reasoning =
        delta.reasoning_content.len ? &delta.reasoning_content : &delta.reasoning;
    if (reasoning->len && delta.content.len)
        Py_RETURN_NONE; /* two events */
    if (delta.content.len)
        return make_event(args[1], &delta.content, 0, 0, KEYS);
    if (reasoning->len)
        return make_event(args[2], reasoning, 0, 0, KEYS);
    Py_RETURN_NONE;
}

/* -- Anthropic Messages -------------------------------------------------------------------- */

static const char *const MESSAGES_TYPES[] = {"content_block_delta", NULL};
static const char *const MESSAGES_DELTAS[] = {"text_delta", "thinking_delta", NULL};

static PyObject *
messages_delta(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Scan s;
    cursor name;
    Py_ssize_t name_len;
    BEGIN("messages_delta", &s, &name, &name_len);
    if (name_len == 4 && memcmp(name, "ping", 4) == 0)
        Py_RETURN_NONE; /* the adapter skips pings before parsing */
    int first = 1, more, type = 0, has_index = 0, has_delta = 0, kind = NO;
    long long index = 0;
    Span key, text = {0}, thinking = {0};
    while ((more = next_key(&s, &first, &key)) == 1) {
        int r;
        if (KEY(&key, "type")) {
            r = name_once(&s, &type, MESSAGES_TYPES);
        }
        else if (KEY(&key, "index")) {
            r = integer_once(&s, &has_index, &index);
        }
        else if (KEY(&key, "delta")) {
            r = NO;
            if (!has_delta++) {
                int inner = 1, more_inner, delta_type = 0;
                Span field;
                while ((more_inner = next_key(&s, &inner, &field)) == 1) {
                    int q;
                    if (KEY(&field, "type"))
                        q = kind = name_once(&s, &delta_type, MESSAGES_DELTAS);
                    else if (KEY(&field, "text"))
                        q = null_or_string(&s, &text);
                    else if (KEY(&field, "thinking"))
                        q = null_or_string(&s, &thinking);
                    else
                        q = scan_value(&s);
                    if (q < 0) {
                        more_inner = NO;
                        break;
                    }
                }
                if (more_inner == 0 && delta_type)
                    r = 0;
            }
        }
        else {
            r = scan_value(&s);
        }
        if (r < 0)
            Py_RETURN_NONE;
    }
    if (more < 0 || !type || !has_index || !has_delta || at_end(&s) < 0)
        Py_RETURN_NONE;
    if (kind == 1 && text.len)
        return make_event(args[1], &text, 1, index, KEYS);
    if (kind == 2 && thinking.len)
        return make_event(args[2], &thinking, 1, index, KEYS);
    Py_RETURN_NONE;
}

/* -- OpenAI Responses ---------------------------------------------------------------------- */

static const char *const RESPONSES_TYPES[] = {
    "response.output_text.delta",
    "response.reasoning_summary_text.delta",
    "response.reasoning_text.delta",
    NULL,
};

/* The largest output index taken as given: well inside the adapter's count() bound. */
#define MAX_INDEX 999999999999999LL

static PyObject *
responses_delta(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Scan s;
    cursor name;
    Py_ssize_t name_len;
    BEGIN("responses_delta", &s, &name, &name_len);
    int first = 1, more, type = 0, has_index = 0, kind = NO;
    long long index = 0;
    Span key, delta = {0};
    while ((more = next_key(&s, &first, &key)) == 1) {
        int r;
        if (KEY(&key, "type"))
            r = kind = name_once(&s, &type, RESPONSES_TYPES);
        else if (KEY(&key, "output_index"))
            r = integer_once(&s, &has_index, &index) < 0 || index < 0 || index > MAX_INDEX
                    ? NO
                    : 0;
        else if (KEY(&key, "delta"))
            r = delta.present || !at(&s, '"') ? NO : scan_string(&s, &delta);
        else
            r = scan_value(&s);
        if (r < 0)
            Py_RETURN_NONE;
    }
    if (more < 0 || !type || !delta.len || at_end(&s) < 0)
        Py_RETURN_NONE;
    return make_event(kind == 1 ? args[1] : args[2], &delta, 1, index, KEYS);
}

/* -- the module ---------------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"chat_delta", (PyCFunction)(void (*)(void))chat_delta, METH_FASTCALL,
     "chat_delta(chunk, text_cls, reasoning_cls, keys=(), /)\n--\n\n"
     "The text or reasoning delta of a Chat Completions piece holding just that, else None."},
    {"messages_delta", (PyCFunction)(void (*)(void))messages_delta, METH_FASTCALL,
     "messages_delta(chunk, text_cls, reasoning_cls, keys=(), /)\n--\n\n"
     "The text or thinking delta of an Anthropic content_block_delta piece, else None."},
    {"responses_delta", (PyCFunction)(void (*)(void))responses_delta, METH_FASTCALL,
     "responses_delta(chunk, text_cls, reasoning_cls, keys=(), /)\n--\n\n"
     "The text or reasoning delta of a Responses delta piece holding just that, else None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "sluice.wire._scan",
    "The commonest upstream frame (one SSE event, one text or reasoning delta), recognised\n"
    "and decoded in one pass; None sends the caller to the general path.",
    0,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__scan(void)
{
    return PyModuleDef_Init(&module);
}
