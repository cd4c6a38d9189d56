/* sluice/_tokens.h: what a secret coming back from an upstream looks like, for the C code that
 * looks for one (sluice._redact, and the relay's shortcut sluice.wire._scan).
 *
 * The same rules as sluice/redact.py, which holds them as regular expressions and does the
 * replacing; this file only answers "might there be one here?", fast, so that the common
 * answer, no, costs a few instructions a byte:
 *
 * - a token is a maximal run of the characters [A-Za-z0-9_-] (what provider keys are made of)
 *   that begins with a known provider's prefix, is at least as long as TOKEN_SHAPES says, and
 *   holds a digit or a capital after the prefix (a random key does; an identifier such as
 *   hf_hub_download_with_progress_bar does not);
 * - a run "bearer" (any case) followed by a space or a tab is reported too: redact.py decides
 *   whether a bearer token follows it.
 *
 * A yes that redact.py then finds nothing in is harmless: the caller looks again, slowly.
 * A no must be right: tests/test_redact.py holds this file to redact.py's expressions.
 */

#ifndef SLUICE_TOKENS_H
#define SLUICE_TOKENS_H

#include <string.h>

typedef struct {
    const char *prefix;
    unsigned char len;
    /* the fewest token characters after the prefix */
    unsigned char rest;
} TokenShape;

/* Keep in step with redact.SHAPES. */
static const TokenShape TOKEN_SHAPES[] = {
    {"sk-", 3, 20},          /* OpenAI (sk-proj-, sk-svcacct-), Anthropic (sk-ant-), Sluice */
    {"AIza", 4, 30},         /* Google */
    {"xai-", 4, 20},         /* xAI */
    {"gsk_", 4, 20},         /* Groq */
    {"hf_", 3, 20},          /* Hugging Face */
    {"AKIA", 4, 16},         /* AWS access key ids */
    {"ASIA", 4, 16},
    {"ghp_", 4, 30},         /* GitHub */
    {"gho_", 4, 30},
    {"ghu_", 4, 30},
    {"ghs_", 4, 30},
    {"ghr_", 4, 30},
    {"github_pat_", 11, 20},
};

/* the shortest run any shape accepts ("AKIA" and 16); a bearer token is longer still
 * ("bearer", a space and 16): text shorter than this holds no secret of a known shape */
#define TOKEN_SHORTEST 20

#define T 1
static const unsigned char TOKEN_CHAR[256] = {
    ['-'] = T, ['_'] = T,
    ['0'] = T, ['1'] = T, ['2'] = T, ['3'] = T, ['4'] = T, ['5'] = T, ['6'] = T, ['7'] = T,
    ['8'] = T, ['9'] = T,
    ['A'] = T, ['B'] = T, ['C'] = T, ['D'] = T, ['E'] = T, ['F'] = T, ['G'] = T, ['H'] = T,
    ['I'] = T, ['J'] = T, ['K'] = T, ['L'] = T, ['M'] = T, ['N'] = T, ['O'] = T, ['P'] = T,
    ['Q'] = T, ['R'] = T, ['S'] = T, ['T'] = T, ['U'] = T, ['V'] = T, ['W'] = T, ['X'] = T,
    ['Y'] = T, ['Z'] = T,
    ['a'] = T, ['b'] = T, ['c'] = T, ['d'] = T, ['e'] = T, ['f'] = T, ['g'] = T, ['h'] = T,
    ['i'] = T, ['j'] = T, ['k'] = T, ['l'] = T, ['m'] = T, ['n'] = T, ['o'] = T, ['p'] = T,
    ['q'] = T, ['r'] = T, ['s'] = T, ['t'] = T, ['u'] = T, ['v'] = T, ['w'] = T, ['x'] = T,
    ['y'] = T, ['z'] = T,
};
#undef T

/* A run of n token characters, followed by the byte next (0 at the end): a token's shape? */
static inline int
token_shaped(const unsigned char *run, Py_ssize_t n, unsigned char next)
{
    if (n == 6) {
        if (next != ' ' && next != '\t')
            return 0;
        static const char bearer[] = "bearer";
        for (int i = 0; i < 6; i++)
            if ((run[i] | 0x20) != bearer[i])
                return 0;
        return 1;
    }
    if (n < TOKEN_SHORTEST)
        return 0;
    for (size_t i = 0; i < sizeof TOKEN_SHAPES / sizeof TOKEN_SHAPES[0]; i++) {
        const TokenShape *shape = &TOKEN_SHAPES[i];
        if (n >= shape->len + shape->rest && run[0] == (unsigned char)shape->prefix[0] &&
            memcmp(run, shape->prefix, shape->len) == 0) {
            for (Py_ssize_t j = shape->len; j < n; j++)
                if ((run[j] >= 'A' && run[j] <= 'Z') || (run[j] >= '0' && run[j] <= '9'))
                    return 1;
            return 0;
        }
    }
    return 0;
}

/* Whether the bytes may hold a token (see the top of this file). */
static inline int
holds_token(const unsigned char *p, Py_ssize_t len)
{
    if (len < TOKEN_SHORTEST)
        return 0; /* most deltas: one token of text */
    const unsigned char *end = p + len;
    Py_ssize_t run = 0;
    for (; p < end; p++) {
        if (TOKEN_CHAR[*p]) {
            run++;
        }
        else {
            if (run >= 6 && token_shaped(p - run, run, *p))
                return 1;
            run = 0;
        }
    }
    return run >= 6 && token_shaped(end - run, run, 0);
}

/* Whether the bytes hold any of keys (a tuple of bytes objects): 1 or 0, or -1 with a
 * TypeError set when keys is not such a tuple. */
static inline int
holds_key(const unsigned char *p, Py_ssize_t len, PyObject *keys)
{
    if (!PyTuple_CheckExact(keys)) {
        PyErr_Format(PyExc_TypeError, "keys must be a tuple of bytes, not %.100s",
                     Py_TYPE(keys)->tp_name);
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(keys);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyTuple_GET_ITEM(keys, i);
        if (!PyBytes_CheckExact(key)) {
            PyErr_Format(PyExc_TypeError, "keys must be a tuple of bytes, not of %.100s",
                         Py_TYPE(key)->tp_name);
            return -1;
        }
        Py_ssize_t key_len = PyBytes_GET_SIZE(key);
        if (key_len > 0 && key_len <= len &&
            memmem(p, len, PyBytes_AS_STRING(key), key_len) != NULL)
            return 1;
    }
    return 0;
}

#endif
