/* Docker json-file entries, unwrapped in bulk: the hot loops of amebo_logging.ship.formats
 * (unwrap) and of the batcher's (operations and line_starts, at the end of this file: the
 * bulk operations of a run of lines, a container's or a plain file's, made at once).
 *
 * unwrap(data, pos, base, max_bytes, watch=b"") -> (lines, starts, stream, objects, stop, watched)
 *
 * Takes the complete outer lines of *data* from index *pos* on while each is a whole entry in
 * exactly the form Docker's json-file driver writes,
 *
 *     {"log":"<JSON string body ending in \n>","stream":"stdout|stderr","time":"<time>"}\n
 *
 * on one stream, and stops at the first line that is anything else (a part of a longer line,
 * another stream, another layout, invalid JSON, a line over *max_bytes*...), which the pure
 * Python framer then reads the careful way.  For the lines taken:
 *
 *   lines    the container's lines (the log value decoded, without its final newline), bytes;
 *   starts   each line's offset in the outer file (base + its index in data), and one more:
 *            where the last ends;
 *   stream   0 for stdout, 1 for stderr (-1 when nothing was taken);
 *   objects  1 when every line starts with '{"' (the common case: JSON lines), else 0;
 *   stop     the index in data where it stopped (len(data) when it took everything);
 *   watched  the lines (their indices in lines) that may hold a key *watch* names: it is up
 *            to four words of 16 bytes, each the start of a key after its opening quote, as a
 *            Docker entry has it (escaped: b'stream\\"' for "stream"; at least 8 bytes, NULs
 *            after a shorter one).  A line not in watched has none of them as a key (nor as a
 *            string after a quote): it has no such word after any quote, and no escaped
 *            backslash or \u escape that could hide one.
 *
 * What it takes it decodes exactly as orjson.loads(entry)["log"].encode() would: every escape
 * of RFC 8259, surrogate pairs joined; a line with a lone surrogate, a control character, or
 * bytes that are not UTF-8 is not taken (orjson would refuse it, or the framer must see it).
 * A decoded line holding a newline or ending in \r is not taken either.  Nothing here keeps
 * state between calls, allocates beyond one scratch buffer the size of data, or releases
 * anything it did not create; nothing reads beyond data.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static const char HEAD[] = "{\"log\":\"";
#define HEAD_LEN 8
static const char STREAM_KEY[] = ",\"stream\":\"";
#define STREAM_KEY_LEN 11
static const char TIME_KEY[] = "\",\"time\":\"";
#define TIME_KEY_LEN 10

/* The marks of a block of BLOCK bytes: bit i set where byte i is a backslash (*backslashes),
 * or a quote, a control character (under 0x20) or a byte beyond ASCII (*others).  With SSE2
 * (every x86-64) a block is 16 bytes; elsewhere 8, in a word (SWAR: each test exact per byte,
 * no carry crosses from one byte into the next). */
#if defined(__SSE2__) && !defined(AMEBO_UNWRAP_NO_SIMD)
#include <emmintrin.h>
#define BLOCK 16
static inline void block_marks(const unsigned char *p, uint32_t *backslashes, uint32_t *others) {
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    *backslashes = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));
    /* (signed: a byte over 0x7f is negative, so under 0x20 too) */
    __m128i o = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
    *others = (uint32_t)_mm_movemask_epi8(o);
}
#else
#define BLOCK 8
#define ONES 0x0101010101010101ULL
#define LOW7 0x7F7F7F7F7F7F7F7FULL
#define HIGHS 0x8080808080808080ULL

/* Eight bytes at p as a word whose lowest byte is p[0], on any machine. */
static inline uint64_t load_word(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* The high bit of each byte of w that is c. */
static inline uint64_t bytes_equal(uint64_t w, unsigned char c) {
    uint64_t y = w ^ (ONES * c);
    return ~(((y & LOW7) + LOW7) | y) & HIGHS;
}

/* The high bits of the bytes of a word gathered into the low eight bits, byte i's as bit i. */
static inline uint32_t gather(uint64_t m) { return (uint32_t)(((m >> 7) * 0x0102040810204080ULL) >> 56); }

static inline void block_marks(const unsigned char *p, uint32_t *backslashes, uint32_t *others) {
    uint64_t w = load_word(p);
    *backslashes = gather(bytes_equal(w, '\\'));
    /* a byte under 0x20 is one whose low seven bits plus 0x60 stay under 0x80 */
    *others = gather((w | ~((w & LOW7) + ONES * 0x60) | bytes_equal(w, '"')) & HIGHS);
}
#endif

/* Whether c is a byte block_marks marks neither way: plain ASCII text, not a quote or a backslash. */
static inline int plain_byte(unsigned char c) { return c != '"' && c != '\\' && c >= 0x20 && c < 0x80; }

static inline int lowest(uint32_t m) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctz(m);
#else
    int k = 0;
    while (!(m & 1)) {
        m >>= 1;
        k++;
    }
    return k;
#endif
}

/* What each simple escape's letter stands for (0: not one; \u is decoded apart). */
static const unsigned char ESCAPED[256] = {
    ['"'] = '"', ['\\'] = '\\', ['/'] = '/', ['b'] = '\b', ['f'] = '\f', ['n'] = '\n', ['r'] = '\r', ['t'] = '\t',
};

/* Eight bytes at p, in memory order (to compare with other bytes so loaded). */
static inline uint64_t word_at(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

/* Whether the n bytes at p are s's (n a constant: compiled to a load or two, not a call). */
static inline int same(const unsigned char *p, const char *s, size_t n) {
    if (n >= 8) {
        const unsigned char *t = (const unsigned char *)s;
        return word_at(p) == word_at(t) && word_at(p + n - 8) == word_at(t + n - 8);
    }
    uint32_t c, d;
    memcpy(&c, p, 4);
    memcpy(&d, s, 4);
    if (c != d) return 0;
    memcpy(&c, p + n - 4, 4);
    memcpy(&d, s + n - 4, 4);
    return c == d;
}

static int hex4(const unsigned char *p, const unsigned char *end, unsigned int *out) {
    unsigned int v = 0;
    if (end - p < 4) return 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned int)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned int)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned int)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

/* The length of the well-formed UTF-8 sequence at p (its first byte >= 0x80), or 0. */
static Py_ssize_t utf8_length(const unsigned char *p, const unsigned char *end) {
    unsigned char c = p[0];
    Py_ssize_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;      /* no overlong forms */
        else if (c == 0xED) hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        else if (c == 0xF4) hi = 0x8F; /* nothing over U+10FFFF */
    } else return 0;
    if (end - p < n) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (Py_ssize_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return n;
}

static unsigned char *put_utf8(unsigned char *o, unsigned int cp) {
    if (cp < 0x80) *o++ = (unsigned char)cp;
    else if (cp < 0x800) {
        *o++ = (unsigned char)(0xC0 | (cp >> 6));
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (unsigned char)(0xE0 | (cp >> 12));
        *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (unsigned char)(0xF0 | (cp >> 18));
        *o++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    }
    return o;
}

/* The words watched for after each quote of a line (see unwrap): at most MAX_WATCH, each of 8
 * to 16 bytes (the start of a key after its opening quote, as the Docker entry has it), as
 * its first eight bytes, the rest, and which of the rest count. */
#define MAX_WATCH 4
#define WORD 16
typedef struct {
    uint64_t head[MAX_WATCH], tail[MAX_WATCH], tail_mask[MAX_WATCH];
    unsigned char first[256]; /* 1 for the first byte of a word: any other is passed at once */
} Watch;

/* Whether the WORD bytes at p start with a watched word. */
static inline int watched_word(const Watch *watch, const unsigned char *p) {
    if (!watch->first[p[0]]) return 0;
    uint64_t head = word_at(p), tail = word_at(p + 8);
    int hit = 0;
    for (int i = 0; i < MAX_WATCH; i++)
        hit |= (head == watch->head[i]) & (((tail ^ watch->tail[i]) & watch->tail_mask[i]) == 0);
    return hit;
}

/* Whether a character a \u escape stands for could be part of a watched key, or the quote or
 * escape before one (a letter, digit, '.', '"' or '\'; not, say, the '<', '>' and '&' Docker
 * writes as \u escapes). */
static inline int may_spell_key(unsigned int cp) {
    return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9') || cp == '.' ||
           cp == '"' || cp == '\\';
}

/* Decodes the JSON string body at p (just after its opening quote, ending at the latest at end)
 * into out; returns the position of its closing quote and sets *out_len, or NULL when it is
 * not one this takes.  Sets *watched when the decoded text may hold a watched word after a
 * quote (an escaped backslash, or a \u escape that may spell one, may hide one).  Up to
 * 2 * BLOCK + WORD bytes may be read beyond end and BLOCK written beyond what is decoded: the
 * caller has *readable* bytes from p on, and out room for as many plus BLOCK. */
static const unsigned char *decode_string(const unsigned char *p, const unsigned char *end, Py_ssize_t readable,
                                          const Watch *watch, int *watched, unsigned char *out,
                                          Py_ssize_t *out_len) {
    unsigned char *o = out;
    int seen = 0;
    /* before this, a block and the next, and a watched word after either, may be read whole */
    const unsigned char *blocks_stop = p + (readable > 2 * BLOCK + WORD ? readable - 2 * BLOCK - WORD : 0);
    while (p < end) {
        /* A block at a time: its bytes copied, its simple escapes (\" above all: a JSON line
         * logged by a container has one around every key and string) decoded in place, up to
         * anything else marked: the closing quote, a \u, a control character, a byte beyond
         * ASCII, which are seen to one at a time below. */
        const unsigned char *at, *from;
        while (end - p >= BLOCK && p < blocks_stop) {
            uint32_t backslashes, others;
            block_marks(p, &backslashes, &others);
            uint32_t marks = backslashes | others;
            const unsigned char *block_end = p + BLOCK;
            from = p;
            while (marks != 0) {
                int k = lowest(marks);
                at = p + k;
                unsigned char c = ESCAPED[at[1]]; /* (at[1] is at most end: readable) */
                if (!((backslashes >> k) & 1) || c == 0) goto marked;
                memcpy(o, from, BLOCK); /* (at - from < BLOCK bytes wanted: a fixed size is a move or two) */
                o += at - from;
                *o++ = c;
                from = at + 2;
                marks &= ~(3u << k); /* the backslash, and its letter if it is one of the marked */
                if (c == '"') seen |= watched_word(watch, from);
                else seen |= c == '\\';
            }
            if (from < block_end) {
                memcpy(o, from, BLOCK);
                o += block_end - from;
                p = block_end;
            } else {
                p = from;
            }
        }
        at = p;
        while (at < end && plain_byte(*at)) at++;
        memmove(o, p, (size_t)(at - p));
        o += at - p;
        p = at;
        goto one;
    marked:
        memcpy(o, from, BLOCK);
        o += at - from;
        p = at;
    one:
        if (p >= end) return NULL;
        unsigned char c = *p;
        if (c == '"') {
            *out_len = o - out;
            *watched = seen;
            return p;
        }
        if (c < 0x20) return NULL; /* a raw control character: not JSON */
        if (c >= 0x80) {
            Py_ssize_t n = utf8_length(p, end);
            if (n == 0) return NULL;
            memcpy(o, p, (size_t)n);
            o += n;
            p += n;
            continue;
        }
        /* a backslash */
        if (end - p < 2) return NULL;
        unsigned char e = p[1];
        p += 2;
        if (ESCAPED[e] != 0) {
            *o++ = ESCAPED[e];
            if (e == '"') seen |= end - p < WORD || watched_word(watch, p); /* (too near the end to read: marked) */
            else seen |= e == '\\';
            continue;
        }
        if (e != 'u') return NULL;
        unsigned int cp, low;
        if (!hex4(p, end, &cp)) return NULL;
        p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, end, &low)) return NULL;
            if (low < 0xDC00 || low > 0xDFFF) return NULL;
            p += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return NULL; /* a lone surrogate: the careful way */
        }
        seen |= may_spell_key(cp);
        o = put_utf8(o, cp);
    }
    return NULL;
}

/* Where the first byte at p that is not plain ASCII text (a quote, backslash, control character
 * or beyond) is, before end; end if none is.  *readable* bytes from p on may be read. */
static const unsigned char *plain_text(const unsigned char *p, const unsigned char *end, Py_ssize_t readable) {
    const unsigned char *blocks_stop = p + (readable > BLOCK ? readable - BLOCK : 0);
    while (end - p >= BLOCK && p < blocks_stop) {
        uint32_t backslashes, others;
        block_marks(p, &backslashes, &others);
        if (backslashes | others) return p + lowest(backslashes | others);
        p += BLOCK;
    }
    while (p < end && plain_byte(*p)) p++;
    return p;
}

static int append_steal(PyObject *list, PyObject *item) {
    if (item == NULL) return -1;
    int rc = PyList_Append(list, item);
    Py_DECREF(item);
    return rc;
}

static PyObject *unwrap(PyObject *self, PyObject *args) {
    Py_buffer view;
    (void)self;
    Py_ssize_t pos, max_bytes;
    long long base;
    const char *words = "";
    Py_ssize_t words_len = 0;
    if (!PyArg_ParseTuple(args, "y*nLn|y#", &view, &pos, &base, &max_bytes, &words, &words_len)) return NULL;
    const unsigned char *data = (const unsigned char *)view.buf;
    const unsigned char *end = data + view.len;
    PyObject *lines = NULL, *starts = NULL, *watched = NULL, *result = NULL;
    unsigned char *scratch = NULL;
    int stream = -1, objects = 1;
    Watch watch;
    if (pos < 0 || pos > view.len) {
        PyErr_SetString(PyExc_ValueError, "pos out of range");
        goto done;
    }
    if (words_len % WORD != 0 || words_len > WORD * MAX_WATCH) {
        PyErr_SetString(PyExc_ValueError, "watch: up to 4 words of 16 bytes (NUL after the end of a shorter one)");
        goto done;
    }
    memset(watch.first, 0, sizeof watch.first);
    for (int i = 0; i < MAX_WATCH; i++) { /* (the slots not given: the first word again, or none) */
        unsigned char word[WORD] = {0}, mask[8];
        if (words_len > 0) {
            memcpy(word, words + WORD * (i < words_len / WORD ? i : 0), WORD);
            watch.first[word[0]] = 1;
        }
        for (int j = 0; j < 8; j++) mask[j] = word[8 + j] ? 0xFF : 0; /* (a NUL: past the word's end) */
        watch.head[i] = word_at(word);
        watch.tail[i] = word_at(word + 8);
        watch.tail_mask[i] = word_at(mask);
    }
    lines = PyList_New(0);
    starts = PyList_New(0);
    watched = PyList_New(0);
    scratch = (unsigned char *)PyMem_Malloc((size_t)(view.len - pos) + BLOCK + 1); /* (see decode_string) */
    if (lines == NULL || starts == NULL || watched == NULL || scratch == NULL) {
        if (scratch == NULL) PyErr_NoMemory();
        goto done;
    }
    const unsigned char *p = data + pos;
    while (p < end) {
        const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) break; /* (not a complete line) */
        if (nl - p < HEAD_LEN || !same(p, HEAD, HEAD_LEN)) break;
        Py_ssize_t n;
        int seen;
        const unsigned char *q = decode_string(p + HEAD_LEN, nl, end - (p + HEAD_LEN), &watch, &seen, scratch, &n);
        if (q == NULL) break;
        /* the log value: one whole line (a final \n, no other, no \r before it) */
        if (n < 1 || scratch[n - 1] != '\n' || (n >= 2 && scratch[n - 2] == '\r')) break;
        n -= 1;
        if (n > max_bytes || memchr(scratch, '\n', (size_t)n) != NULL) break;
        q += 1; /* past the closing quote */
        if (nl - q < STREAM_KEY_LEN + 6 + TIME_KEY_LEN + 2 || !same(q, STREAM_KEY, STREAM_KEY_LEN)) break;
        q += STREAM_KEY_LEN;
        int this_stream;
        if (same(q, "stdout", 6)) this_stream = 0;
        else if (same(q, "stderr", 6)) this_stream = 1;
        else break;
        if (stream >= 0 && this_stream != stream) break;
        q += 6;
        if (!same(q, TIME_KEY, TIME_KEY_LEN)) break;
        q += TIME_KEY_LEN;
        q = plain_text(q, nl, end - q);
        if (nl - q != 2 || q[0] != '"' || q[1] != '}') break;
        PyObject *start = PyLong_FromLongLong(base + (long long)(p - data));
        if (append_steal(starts, start) < 0) goto done;
        if (append_steal(lines, PyBytes_FromStringAndSize((const char *)scratch, n)) < 0) goto done;
        if (n < 2 || scratch[0] != '{' || scratch[1] != '"') objects = 0;
        if (seen && words_len && append_steal(watched, PyLong_FromSsize_t(PyList_GET_SIZE(lines) - 1)) < 0) goto done;
        stream = this_stream;
        p = nl + 1;
    }
    if (PyList_GET_SIZE(lines) > 0 && append_steal(starts, PyLong_FromLongLong(base + (long long)(p - data))) < 0)
        goto done;
    if (PyList_GET_SIZE(lines) == 0) objects = 0;
    result = Py_BuildValue("(OOiinO)", lines, starts, stream, objects, (Py_ssize_t)(p - data), watched);
done:
    PyMem_Free(scratch);
    Py_XDECREF(lines);
    Py_XDECREF(starts);
    Py_XDECREF(watched);
    PyBuffer_Release(&view);
    return result;
}

/* operations(lines, starts, prefix, middle, member) -> list of bytes
 *
 * The bulk operation of each line (each starts with '{'), as the batcher's %-format would
 * make it: prefix, the line's start, middle, its start again, ",", member, then the line
 * after its '{', and a newline. */
static PyObject *operations(PyObject *self, PyObject *args) {
    PyObject *lines, *starts, *out = NULL;
    Py_buffer prefix, middle, member;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!y*y*y*", &PyList_Type, &lines, &PyList_Type, &starts, &prefix, &middle, &member))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(lines);
    if (PyList_GET_SIZE(starts) < n) {
        PyErr_SetString(PyExc_ValueError, "fewer starts than lines");
        goto done;
    }
    out = PyList_New(n);
    if (out == NULL) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        if (!PyBytes_Check(line) || PyBytes_GET_SIZE(line) < 1 || PyBytes_AS_STRING(line)[0] != '{') {
            PyErr_SetString(PyExc_ValueError, "each line must be bytes starting with {");
            Py_CLEAR(out);
            goto done;
        }
        long long start = PyLong_AsLongLong(PyList_GET_ITEM(starts, i));
        if (start == -1 && PyErr_Occurred()) {
            Py_CLEAR(out);
            goto done;
        }
        char digits[32];
        int d = snprintf(digits, sizeof digits, "%lld", start);
        Py_ssize_t tail = PyBytes_GET_SIZE(line) - 1;
        Py_ssize_t size = prefix.len + d + middle.len + d + 1 + member.len + tail + 1;
        PyObject *op = PyBytes_FromStringAndSize(NULL, size);
        if (op == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        char *o = PyBytes_AS_STRING(op);
        memcpy(o, prefix.buf, (size_t)prefix.len);
        o += prefix.len;
        memcpy(o, digits, (size_t)d);
        o += d;
        memcpy(o, middle.buf, (size_t)middle.len);
        o += middle.len;
        memcpy(o, digits, (size_t)d);
        o += d;
        *o++ = ',';
        memcpy(o, member.buf, (size_t)member.len);
        o += member.len;
        memcpy(o, PyBytes_AS_STRING(line) + 1, (size_t)tail);
        o += tail;
        *o = '\n';
        PyList_SET_ITEM(out, i, op);
    }
done:
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&middle);
    PyBuffer_Release(&member);
    return out;
}

/* line_starts(lines, offset) -> list of int
 *
 * Where each of the lines starts, the first at offset, each followed by a newline; and one
 * more: where the last ends. */
static PyObject *line_starts(PyObject *self, PyObject *args) {
    PyObject *lines;
    long long at;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!L", &PyList_Type, &lines, &at)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(lines);
    PyObject *out = PyList_New(n + 1);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i <= n; i++) {
        PyObject *start = PyLong_FromLongLong(at);
        if (start == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, start);
        if (i < n) {
            PyObject *line = PyList_GET_ITEM(lines, i);
            if (!PyBytes_Check(line)) {
                Py_DECREF(out);
                PyErr_SetString(PyExc_TypeError, "each line must be bytes");
                return NULL;
            }
            at += (long long)PyBytes_GET_SIZE(line) + 1;
        }
    }
    return out;
}

static PyMethodDef methods[] = {
    {"line_starts", line_starts, METH_VARARGS, "Where each line starts (see the module's source)."},
    {"unwrap", unwrap, METH_VARARGS, "Docker json-file entries from data[pos:], unwrapped (see the module's source)."},
    {"operations", operations, METH_VARARGS, "The bulk operation of each line (see the module's source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_unwrap", "Docker json-file entries, unwrapped in bulk.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__unwrap(void) { return PyModule_Create(&module); }
