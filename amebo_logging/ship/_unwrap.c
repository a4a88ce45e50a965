/* Docker json-file entries, unwrapped in bulk: the hot loops of amebo_logging.ship.formats
 * (unwrap) and of the batcher's (operations and line_starts, at the end of this file: the
 * bulk operations of a run of lines, a container's or a plain file's, made at once).
 *
 * unwrap(data, pos, base, max_bytes) -> (lines, starts, stream, objects, stop)
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
 *   stop     the index in data where it stopped (len(data) when it took everything).
 *
 * What it takes it decodes exactly as orjson.loads(entry)["log"].encode() would: every escape
 * of RFC 8259, surrogate pairs joined; a line with a lone surrogate, a control character, or
 * bytes that are not UTF-8 is not taken (orjson would refuse it, or the framer must see it).
 * A decoded line holding a newline or ending in \r is not taken either.  Nothing here keeps
 * state between calls, allocates beyond one scratch buffer the size of data, or releases
 * anything it did not create.
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

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* A mask with the high bit of each byte of w that is a quote, a backslash, under 0x20 or 0x80
 * and over.  SWAR: a byte of (x - ONES) & ~x & HIGHS is set where x's byte is zero, falsely
 * only above a byte that is, so the lowest set bit is always exact, which is all it is used
 * for. */
static inline uint64_t special(uint64_t w) {
    uint64_t quote = w ^ (ONES * '"'), backslash = w ^ (ONES * '\\');
    return (w | ((quote - ONES) & ~quote) | ((backslash - ONES) & ~backslash) | ((w - ONES * 0x20) & ~w)) & HIGHS;
}

/* The index, in memory order, of the first byte of w (as loaded by memcpy) that special()
 * marks; m = special(w) is not 0.  Big-endian machines load memory order the other way round,
 * so they are given the word byte-swapped (see load_word). */
static inline int first_marked(uint64_t m) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctzll(m) >> 3;
#else
    int k = 0;
    while (!(m & 0x80)) {
        m >>= 8;
        k++;
    }
    return k;
#endif
}

/* Eight bytes at p as a word whose lowest byte is p[0], on any machine. */
static inline uint64_t load_word(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
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

/* Decodes the JSON string body at p (just after its opening quote) into out; returns the
 * position of its closing quote and sets *out_len, or NULL when it is not one this takes. */
static const unsigned char *decode_string(const unsigned char *p, const unsigned char *end, unsigned char *out,
                                          Py_ssize_t *out_len) {
    unsigned char *o = out;
    while (p < end) {
        /* eight bytes at a time up to the next quote, backslash, control character or byte
         * beyond ASCII (out has room: what is written never outruns what is read) */
        while (end - p >= 8) {
            uint64_t m = special(load_word(p));
            memcpy(o, p, 8);
            if (m != 0) {
                int k = first_marked(m);
                o += k;
                p += k;
                goto found;
            }
            o += 8;
            p += 8;
        }
        while (p < end && *p != '"' && *p != '\\' && *p >= 0x20 && *p < 0x80) *o++ = *p++;
    found:
        if (p >= end) return NULL;
        unsigned char c = *p;
        if (c == '"') {
            *out_len = o - out;
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
        switch (e) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '/': *o++ = '/'; break;
            case 'b': *o++ = '\b'; break;
            case 'f': *o++ = '\f'; break;
            case 'n': *o++ = '\n'; break;
            case 'r': *o++ = '\r'; break;
            case 't': *o++ = '\t'; break;
            case 'u': {
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
                o = put_utf8(o, cp);
                break;
            }
            default: return NULL;
        }
    }
    return NULL;
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
    if (!PyArg_ParseTuple(args, "y*nLn", &view, &pos, &base, &max_bytes)) return NULL;
    const unsigned char *data = (const unsigned char *)view.buf;
    const unsigned char *end = data + view.len;
    PyObject *lines = NULL, *starts = NULL, *result = NULL;
    unsigned char *scratch = NULL;
    int stream = -1, objects = 1;
    if (pos < 0 || pos > view.len) {
        PyErr_SetString(PyExc_ValueError, "pos out of range");
        goto done;
    }
    lines = PyList_New(0);
    starts = PyList_New(0);
    scratch = (unsigned char *)PyMem_Malloc((size_t)(view.len - pos) + 1);
    if (lines == NULL || starts == NULL || scratch == NULL) {
        if (scratch == NULL) PyErr_NoMemory();
        goto done;
    }
    const unsigned char *p = data + pos;
    while (p < end) {
        const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) break; /* (not a complete line) */
        if (nl - p < HEAD_LEN || memcmp(p, HEAD, HEAD_LEN) != 0) break;
        Py_ssize_t n;
        const unsigned char *q = decode_string(p + HEAD_LEN, nl, scratch, &n);
        if (q == NULL) break;
        /* the log value: one whole line (a final \n, no other, no \r before it) */
        if (n < 1 || scratch[n - 1] != '\n' || (n >= 2 && scratch[n - 2] == '\r')) break;
        n -= 1;
        if (n > max_bytes || memchr(scratch, '\n', (size_t)n) != NULL) break;
        q += 1; /* past the closing quote */
        if (nl - q < STREAM_KEY_LEN + 6 + TIME_KEY_LEN + 2 || memcmp(q, STREAM_KEY, STREAM_KEY_LEN) != 0) break;
        q += STREAM_KEY_LEN;
        int this_stream;
        if (memcmp(q, "stdout", 6) == 0) this_stream = 0;
        else if (memcmp(q, "stderr", 6) == 0) this_stream = 1;
        else break;
        if (stream >= 0 && this_stream != stream) break;
        q += 6;
        if (memcmp(q, TIME_KEY, TIME_KEY_LEN) != 0) break;
        q += TIME_KEY_LEN;
        while (q < nl && *q != '"' && *q != '\\' && *q >= 0x20 && *q < 0x80) q++;
        if (nl - q != 2 || q[0] != '"' || q[1] != '}') break;
        PyObject *start = PyLong_FromLongLong(base + (long long)(p - data));
        if (append_steal(starts, start) < 0) goto done;
        if (append_steal(lines, PyBytes_FromStringAndSize((const char *)scratch, n)) < 0) goto done;
        if (n < 2 || scratch[0] != '{' || scratch[1] != '"') objects = 0;
        stream = this_stream;
        p = nl + 1;
    }
    if (PyList_GET_SIZE(lines) > 0 && append_steal(starts, PyLong_FromLongLong(base + (long long)(p - data))) < 0)
        goto done;
    if (PyList_GET_SIZE(lines) == 0) objects = 0;
    result = Py_BuildValue("(OOiin)", lines, starts, stream, objects, (Py_ssize_t)(p - data));
done:
    PyMem_Free(scratch);
    Py_XDECREF(lines);
    Py_XDECREF(starts);
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
