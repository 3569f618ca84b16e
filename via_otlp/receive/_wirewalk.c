/* The log records of an ExportLogsServiceRequest's wire bytes, walked once into columns.
 *
 * An optional speed-up of `Normaliser.batches` (via_otlp/receive/normalise.py, `_walker`):
 * the pure-Python path is the reference, and this walker gives exactly its columns or says it
 * cannot (a take returns None, and Python does the records from there on). It is only asked about bytes the protobuf
 * parser already accepted unrepaired, but it never trusts them: every length is checked
 * against the bytes left, varints stop at 10 bytes, and recursion is bounded: the messages
 * walked are a fixed five levels (request, ResourceLogs, ScopeLogs, LogRecord, KeyValue), and
 * an AnyValue rendered as text is entered at most MAX_RENDER_DEPTH + 1 levels deep (deeper is
 * "…", as in Python). Anything it does not read exactly as the parser would (groups, a known
 * field with another wire type, a body or KeyValue value given twice, which the parser
 * merges) makes it give up on the rest of the request; a value it cannot render (bytes) is
 * rendered by Python, asked once the take has walked all its records (a take that gives up
 * has asked nothing).
 *
 * Walk(raw, unique_keys, hint_key, render, hint_text, severity): a walk of one request
 *   raw          bytes of an ExportLogsServiceRequest
 *   unique_keys  tuple of bytes: the unique-id attribute keys, best first
 *   hint_key     bytes: the template-hint attribute key
 *   render       callable(bytes) -> str: render_value of the AnyValue with these wire bytes
 *   hint_text    callable(bytes) -> str: its string_value
 *   severity     callable(str, int) -> str: severity_of (cached by the caller)
 * .take(skip, n) passes over the next `skip` log records (not read), then walks the n after
 * them (fewer at the end of the request), records of every scope of every resource in wire
 * order; so a request is walked one batch at a time, never into columns all at once.
 * -> (bodies, severities, times, trace_ids, unique_ids, hints, time_min, time_max): a list
 *    each, an item per record, except the trace ids: (blob, width) when all are `width` > 0
 *    bytes wide, else a list; then the least and greatest time (0, 0 for no record). Or None:
 *    the walker gives up on the request (this take and every later one).
 *
 * ABI_VERSION: normalise.py uses the module only when it is the version it reads (a stale
 * build, left by an editable install after a `git pull`, is refused): raise it whenever the
 * interface or the meaning of its results changes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include <math.h>
#include <stdlib.h>

#define ABI_VERSION 2 /* normalise.WALKER_ABI: the version of this interface */
#define MAX_KEYS 64
#define SEV_SLOTS 8
#define MAX_RENDER_DEPTH 16 /* normalise.MAX_RENDER_DEPTH: deeper values render as "…" */

typedef struct {
    const uint8_t *p;
    Py_ssize_t n;
} span;

/* A varint at *pos (< end): 0 on success, -1 when truncated, longer than 10 bytes, or past
 * 64 bits (a tenth byte above 1: left to the parser's own rule). */
static int
read_varint(const uint8_t *buf, Py_ssize_t *pos, Py_ssize_t end, uint64_t *out)
{
    uint64_t v = 0;
    Py_ssize_t i = *pos;
    for (int shift = 0; shift < 70; shift += 7) {
        if (i >= end)
            return -1;
        uint8_t b = buf[i++];
        if (shift == 63 && b > 1)
            return -1;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80) {
            *pos = i;
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* One field: its number and wire type, and its value (varint and fixed) or bytes. */
typedef struct {
    uint32_t number;
    int wire_type;
    uint64_t value;
    span data;
} field;

/* The field at *pos: 0 on success, -1 on anything the walker does not take (malformed, a
 * group, field number 0). */
static int
read_field(const uint8_t *buf, Py_ssize_t *pos, Py_ssize_t end, field *f)
{
    uint64_t key, len;
    f->value = 0;
    f->data.p = NULL;
    f->data.n = 0;
    if (read_varint(buf, pos, end, &key) < 0)
        return -1;
    if ((key >> 3) == 0 || (key >> 3) > 0x1FFFFFFF)
        return -1;
    f->number = (uint32_t)(key >> 3);
    f->wire_type = (int)(key & 7);
    switch (f->wire_type) {
    case 0:
        return read_varint(buf, pos, end, &f->value);
    case 1:
    case 5: {
        int size = f->wire_type == 1 ? 8 : 4;
        if (end - *pos < size)
            return -1;
        for (int i = size - 1; i >= 0; i--) /* little-endian on the wire, whatever the machine */
            f->value = (f->value << 8) | buf[*pos + i];
        *pos += size;
        return 0;
    }
    case 2:
        if (read_varint(buf, pos, end, &len) < 0 || len > (uint64_t)(end - *pos))
            return -1;
        f->data.p = buf + *pos;
        f->data.n = (Py_ssize_t)len;
        *pos += (Py_ssize_t)len;
        return 0;
    default:
        return -1;
    }
}

typedef struct {
    PyObject *bodies, *severities, *times, *uids, *hints;
    /* trace ids: where each record's is in the request (one blob made of them at the end) */
    span *traces;
    Py_ssize_t n_traces, traces_cap;
    uint64_t time_min, time_max;
    PyObject *render, *hint_text, *severity; /* (references the Walk holds) */
    /* values left to a callback, asked once the take has walked all its records (a take that
     * gives up has asked Python nothing): the item `index` of `list` is None until then */
    struct pending {
        PyObject *list, *fn;
        Py_ssize_t index;
        span value;
    } *pending;
    Py_ssize_t n_pending, pending_cap;
    span keys[MAX_KEYS];
    Py_ssize_t n_keys;
    Py_ssize_t worst_rank; /* the rank to beat: as many as there are distinct keys */
    span hint_key;
    /* severity texts already mapped: (text bytes, number) -> canonical (a new reference) */
    span sev_text[SEV_SLOTS];
    int32_t sev_num[SEV_SLOTS];
    PyObject *sev_out[SEV_SLOTS];
    int sev_used, sev_next;
} walker;

enum { OK = 0, GIVE_UP = 1, FAILED = -1 }; /* FAILED: a Python exception is set */

static int
append_new(PyObject *list, PyObject *item)
{
    if (item == NULL)
        return FAILED;
    int rc = PyList_Append(list, item);
    Py_DECREF(item);
    return rc < 0 ? FAILED : OK;
}

/* A callback's answer, which must be a str. */
static PyObject *
call_text(PyObject *fn, span value)
{
    PyObject *arg = PyBytes_FromStringAndSize((const char *)value.p, value.n);
    if (arg == NULL)
        return NULL;
    PyObject *out = PyObject_CallOneArg(fn, arg);
    Py_DECREF(arg);
    if (out != NULL && !PyUnicode_CheckExact(out)) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_TypeError, "_wirewalk: a text callback returned no str");
        return NULL;
    }
    return out;
}

/* -- render_value in C: the text `render_value` gives an AnyValue that is not a string -------
 * Exactly `render_plain(_plain(value, 0))`: scalars as `repr` and true/false, arrays and kvlists
 * as compact JSON with sorted keys (a key given twice keeps its last value), non-ASCII as is,
 * "…" past MAX_RENDER_DEPTH. Anything else gives up and the caller asks Python: bytes values
 * (base64), string_value_strindex, a value field given twice or two of them (the parser merges
 * or overrides), a field of a known number with another wire type. */

typedef struct {
    char *p;
    Py_ssize_t n, cap;
} text_buf;

static int
put(text_buf *b, const char *s, Py_ssize_t n)
{
    if (n == 0)
        return OK; /* (s may be NULL: an empty key) */
    if (b->n + n > b->cap) {
        Py_ssize_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) {
            if (cap > PY_SSIZE_T_MAX / 2) {
                PyErr_NoMemory();
                return FAILED;
            }
            cap *= 2;
        }
        char *grown = PyMem_Realloc(b->p, (size_t)cap);
        if (grown == NULL) {
            PyErr_NoMemory();
            return FAILED;
        }
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, (size_t)n);
    b->n += n;
    return OK;
}

/* A JSON string as json.dumps(ensure_ascii=False) writes it. */
static int
put_json_string(text_buf *b, span s)
{
    static const char hex[] = "0123456789abcdef";
    if (s.n == 0)
        return put(b, "\"\"", 2); /* (s.p may be NULL) */
    if (put(b, "\"", 1) < 0)
        return FAILED;
    Py_ssize_t run = 0; /* s.p[run..i) is copied as it is */
    for (Py_ssize_t i = 0; i < s.n; i++) {
        uint8_t c = s.p[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        if (put(b, (const char *)s.p + run, i - run) < 0)
            return FAILED;
        run = i + 1;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        Py_ssize_t len = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            len = 6;
        }
        if (put(b, esc, len) < 0)
            return FAILED;
    }
    if (put(b, (const char *)s.p + run, s.n - run) < 0)
        return FAILED;
    return put(b, "\"", 1);
}

static int
put_double(text_buf *b, double d, int quoted)
{
    if (!isfinite(d)) { /* _plain gives str(d): a JSON string inside a value, bare on top */
        const char *t = isnan(d) ? "nan" : d > 0 ? "inf" : "-inf";
        span text = {(const uint8_t *)t, (Py_ssize_t)strlen(t)};
        return quoted ? put_json_string(b, text) : put(b, t, text.n);
    }
    char *r = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (r == NULL)
        return FAILED;
    int rc = put(b, r, (Py_ssize_t)strlen(r));
    PyMem_Free(r);
    return rc;
}

typedef struct {
    span key, value;
    int present;
    Py_ssize_t order;
} entry;

static int
entry_cmp(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    Py_ssize_t n = x->key.n < y->key.n ? x->key.n : y->key.n;
    int c = n ? memcmp(x->key.p, y->key.p, (size_t)n) : 0;
    if (c == 0)
        c = (x->key.n > y->key.n) - (x->key.n < y->key.n);
    if (c == 0)
        c = (x->order > y->order) - (x->order < y->order);
    return c;
}

static int put_plain(text_buf *b, span value, int present, int depth, int top);

/* An ArrayValue (`kvlist` 0) or KeyValueList (1) as JSON. */
static int
put_list(text_buf *b, span list, int kvlist, int depth)
{
    Py_ssize_t pos = 0, n = 0, cap = 0;
    entry *items = NULL;
    int rc = OK;
    while (pos < list.n) {
        field f;
        if (read_field(list.p, &pos, list.n, &f) < 0) {
            rc = GIVE_UP;
            goto done;
        }
        if (f.number != 1)
            continue;
        if (f.wire_type != 2) {
            rc = GIVE_UP;
            goto done;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            entry *grown = PyMem_Realloc(items, (size_t)cap * sizeof(entry));
            if (grown == NULL) {
                PyErr_NoMemory();
                rc = FAILED;
                goto done;
            }
            items = grown;
        }
        entry *e = &items[n];
        e->order = n;
        n++;
        e->key.p = NULL;
        e->key.n = 0;
        e->value = f.data;
        e->present = 1;
        if (!kvlist)
            continue;
        /* a KeyValue: its key (the last given) and value (given once) */
        span kv = f.data;
        Py_ssize_t kp = 0;
        e->present = 0;
        while (kp < kv.n) {
            field k;
            if (read_field(kv.p, &kp, kv.n, &k) < 0) {
                rc = GIVE_UP;
                goto done;
            }
            if ((k.number == 1 || k.number == 2) && k.wire_type != 2) {
                rc = GIVE_UP;
                goto done;
            }
            if (k.number == 1)
                e->key = k.data;
            else if (k.number == 2) {
                if (e->present) {
                    rc = GIVE_UP;
                    goto done;
                }
                e->value = k.data;
                e->present = 1;
            }
        }
    }
    if (kvlist && n > 1)
        qsort(items, (size_t)n, sizeof(entry), entry_cmp);
    if (put(b, kvlist ? "{" : "[", 1) < 0) {
        rc = FAILED;
        goto done;
    }
    int first = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (kvlist && i + 1 < n && items[i].key.n == items[i + 1].key.n &&
            (items[i].key.n == 0 ||
             memcmp(items[i].key.p, items[i + 1].key.p, (size_t)items[i].key.n) == 0))
            continue; /* a key given again later: the dict keeps the last value */
        if (!first && put(b, ",", 1) < 0) {
            rc = FAILED;
            goto done;
        }
        first = 0;
        if (kvlist && (put_json_string(b, items[i].key) < 0 || put(b, ":", 1) < 0)) {
            rc = FAILED;
            goto done;
        }
        rc = put_plain(b, items[i].value, items[i].present, depth + 1, 0);
        if (rc != OK)
            goto done;
    }
    if (put(b, kvlist ? "}" : "]", 1) < 0)
        rc = FAILED;
done:
    PyMem_Free(items);
    return rc;
}

/* `_plain(value, depth)` written as render_plain (`top`) or json.dumps (inside) writes it. */
static int
put_plain(text_buf *b, span value, int present, int depth, int top)
{
    static const char cut[] = "\xe2\x80\xa6"; /* … */
    if (depth > MAX_RENDER_DEPTH) {
        span text = {(const uint8_t *)cut, 3};
        return top ? put(b, cut, 3) : put_json_string(b, text);
    }
    field kind = {0, 0, 0, {NULL, 0}};
    int kinds = 0;
    Py_ssize_t pos = 0;
    while (present && pos < value.n) {
        field f;
        if (read_field(value.p, &pos, value.n, &f) < 0)
            return GIVE_UP;
        if (f.number < 1 || f.number > 8)
            continue; /* unknown fields: no part of the value */
        static const int wire_of[9] = {-1, 2, 0, 0, 1, 2, 2, 2, 0};
        if (f.wire_type != wire_of[f.number] || kinds++)
            return GIVE_UP; /* another wire type, or a second value field */
        kind = f;
    }
    if (!kinds) /* no value: None, "" on top */
        return top ? OK : put(b, "null", 4);
    char digits[32];
    switch (kind.number) {
    case 1:
        return top ? put(b, (const char *)kind.data.p, kind.data.n)
                   : put_json_string(b, kind.data);
    case 2:
        return kind.value ? put(b, "true", 4) : put(b, "false", 5);
    case 3: {
        int len = snprintf(digits, sizeof digits, "%lld", (long long)(int64_t)kind.value);
        return put(b, digits, len);
    }
    case 4: {
        double d;
        memcpy(&d, &kind.value, sizeof d);
        return put_double(b, d, !top);
    }
    case 5:
    case 6:
        return put_list(b, kind.data, kind.number == 6, depth);
    default: /* bytes (base64), string_value_strindex: Python renders them */
        return GIVE_UP;
    }
}

/* render_value(value) made here: a new str, or NULL with *give_up (nothing set) or an error. */
static PyObject *
render_here(span value, int *give_up)
{
    text_buf b = {NULL, 0, 0};
    int rc = put_plain(&b, value, 1, 0, 1);
    PyObject *text = NULL;
    if (rc == OK) {
        text = PyUnicode_DecodeUTF8(b.p ? b.p : "", b.n, NULL);
        if (text == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            *give_up = 1;
        }
    }
    else if (rc == GIVE_UP)
        *give_up = 1;
    PyMem_Free(b.p);
    return text;
}

/* The text of the AnyValue `value` (`present`: its field was on the wire), to be appended to
 * `list`: a lone string field decoded here (NULL with *give_up when not UTF-8), any other value
 * rendered here when `render` (`render_here`), else None, the value left to `fn` (exact: the
 * bytes alone parse as the field did) until the take has walked all its records (`ask`). */
static PyObject *
value_text(walker *w, PyObject *list, span value, int present, PyObject *fn, int render,
           int *give_up)
{
    if (!present || value.n == 0)
        return PyUnicode_FromStringAndSize("", 0);
    Py_ssize_t pos = 0;
    field f;
    if (read_field(value.p, &pos, value.n, &f) == 0 && pos == value.n) {
        if (f.number == 1 && f.wire_type == 2) {
            PyObject *text = PyUnicode_DecodeUTF8((const char *)f.data.p, f.data.n, NULL);
            if (text == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                PyErr_Clear();
                *give_up = 1;
            }
            return text;
        }
    }
    if (render) {
        int cannot = 0;
        PyObject *text = render_here(value, &cannot);
        if (text != NULL || !cannot)
            return text;
    }
    if (w->n_pending == w->pending_cap) {
        Py_ssize_t cap = w->pending_cap ? 2 * w->pending_cap : 64;
        struct pending *grown = PyMem_Realloc(w->pending, (size_t)cap * sizeof *grown);
        if (grown == NULL)
            return PyErr_NoMemory();
        w->pending = grown;
        w->pending_cap = cap;
    }
    struct pending *p = &w->pending[w->n_pending++];
    p->list = list;
    p->fn = fn;
    p->index = PyList_GET_SIZE(list);
    p->value = value;
    return Py_NewRef(Py_None);
}

/* The callbacks' texts of the values left to them, in their places: OK or FAILED. */
static int
ask(walker *w)
{
    for (Py_ssize_t i = 0; i < w->n_pending; i++) {
        struct pending *p = &w->pending[i];
        PyObject *text = call_text(p->fn, p->value);
        if (text == NULL)
            return FAILED;
        if (PyList_SetItem(p->list, p->index, text) < 0) /* (steals text, drops the None) */
            return FAILED;
    }
    return OK;
}

/* The canonical severity of (text, number), from a few remembered ones or `severity`. */
static PyObject *
severity_text(walker *w, span text, int32_t number, int *give_up)
{
    for (int i = 0; i < w->sev_used; i++) {
        if (w->sev_num[i] == number && w->sev_text[i].n == text.n &&
            (text.n == 0 || memcmp(w->sev_text[i].p, text.p, (size_t)text.n) == 0)) {
            Py_INCREF(w->sev_out[i]);
            return w->sev_out[i];
        }
    }
    PyObject *t = PyUnicode_DecodeUTF8((const char *)text.p, text.n, NULL);
    if (t == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            *give_up = 1;
        }
        return NULL;
    }
    PyObject *num = PyLong_FromLong(number);
    if (num == NULL) {
        Py_DECREF(t);
        return NULL;
    }
    PyObject *out = PyObject_CallFunctionObjArgs(w->severity, t, num, NULL);
    Py_DECREF(t);
    Py_DECREF(num);
    if (out == NULL)
        return NULL;
    if (!PyUnicode_CheckExact(out)) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_TypeError, "_wirewalk: severity returned no str");
        return NULL;
    }
    int slot = w->sev_used < SEV_SLOTS ? w->sev_used++ : (w->sev_next++ % SEV_SLOTS);
    Py_XDECREF(w->sev_out[slot]);
    w->sev_text[slot] = text;
    w->sev_num[slot] = number;
    Py_INCREF(out);
    w->sev_out[slot] = out;
    return out;
}

static int
key_is(span key, span want)
{
    return key.n == want.n && (key.n == 0 || memcmp(key.p, want.p, (size_t)key.n) == 0);
}

static int
walk_record(walker *w, const uint8_t *buf, Py_ssize_t pos, Py_ssize_t end)
{
    uint64_t time = 0, observed = 0;
    int32_t sev_num = 0;
    span sev = {NULL, 0}, body = {NULL, 0}, trace = {NULL, 0};
    int has_body = 0;
    /* unique id: the first value of the best-ranked key; hint: the last value of its key */
    Py_ssize_t uid_rank = w->worst_rank;
    span uid = {NULL, 0}, hint = {NULL, 0};
    int uid_present = 0, hint_present = 0;

    while (pos < end) {
        field f;
        if (read_field(buf, &pos, end, &f) < 0)
            return GIVE_UP;
        int wt = f.wire_type;
        uint64_t v = f.value;
        span s = f.data;
        switch (f.number) {
        case 1: /* time_unix_nano, fixed64 */
            if (wt != 1)
                return GIVE_UP;
            time = v;
            break;
        case 11: /* observed_time_unix_nano, fixed64 */
            if (wt != 1)
                return GIVE_UP;
            observed = v;
            break;
        case 2: /* severity_number, enum: only the values an int32 holds as given */
            if (wt != 0 || v > 0x7FFFFFFF)
                return GIVE_UP;
            sev_num = (int32_t)v;
            break;
        case 3: /* severity_text */
            if (wt != 2)
                return GIVE_UP;
            sev = s;
            break;
        case 5: /* body: given twice, the parser merges the two */
            if (wt != 2 || has_body)
                return GIVE_UP;
            body = s;
            has_body = 1;
            break;
        case 9: /* trace_id */
            if (wt != 2)
                return GIVE_UP;
            trace = s;
            break;
        case 6: { /* attributes: one KeyValue */
            if (wt != 2)
                return GIVE_UP;
            span key = {NULL, 0}, value = {NULL, 0};
            int has_value = 0;
            Py_ssize_t kp = 0;
            while (kp < s.n) {
                field k;
                if (read_field(s.p, &kp, s.n, &k) < 0)
                    return GIVE_UP;
                if (k.number == 1) {
                    if (k.wire_type != 2)
                        return GIVE_UP;
                    key = k.data;
                }
                else if (k.number == 2) {
                    if (k.wire_type != 2 || has_value)
                        return GIVE_UP;
                    value = k.data;
                    has_value = 1;
                }
            }
            Py_ssize_t rank = -1;
            for (Py_ssize_t i = 0; i < w->n_keys; i++)
                if (key_is(key, w->keys[i]))
                    rank = i; /* a key listed twice ranks as its last place */
            if (rank >= 0 && rank < uid_rank) {
                uid_rank = rank;
                uid = value;
                uid_present = has_value;
            }
            else if (key_is(key, w->hint_key)) {
                hint = value;
                hint_present = has_value;
            }
            break;
        }
        default:
            break; /* fields not read (span id, flags, ...) and unknown ones */
        }
    }

    int give_up = 0;
    PyObject *text = value_text(w, w->bodies, body, has_body, w->render, 1, &give_up);
    if (text == NULL)
        return give_up ? GIVE_UP : FAILED;
    if (append_new(w->bodies, text) < 0)
        return FAILED;
    PyObject *sv = severity_text(w, sev, sev_num, &give_up);
    if (sv == NULL)
        return give_up ? GIVE_UP : FAILED;
    if (append_new(w->severities, sv) < 0)
        return FAILED;
    if (append_new(w->times, PyLong_FromUnsignedLongLong(time ? time : observed)) < 0)
        return FAILED;
    uint64_t t = time ? time : observed;
    if (w->n_traces == 0 || t < w->time_min)
        w->time_min = t;
    if (w->n_traces == 0 || t > w->time_max)
        w->time_max = t;
    if (w->n_traces == w->traces_cap) {
        Py_ssize_t cap = w->traces_cap ? 2 * w->traces_cap : 1024;
        span *grown = PyMem_Realloc(w->traces, (size_t)cap * sizeof(span));
        if (grown == NULL) {
            PyErr_NoMemory();
            return FAILED;
        }
        w->traces = grown;
        w->traces_cap = cap;
    }
    w->traces[w->n_traces++] = trace;
    PyObject *u = value_text(w, w->uids, uid, uid_present, w->render, 1, &give_up);
    if (u == NULL)
        return give_up ? GIVE_UP : FAILED;
    if (append_new(w->uids, u) < 0)
        return FAILED;
    PyObject *h = value_text(w, w->hints, hint, hint_present, w->hint_text, 0, &give_up);
    if (h == NULL)
        return give_up ? GIVE_UP : FAILED;
    if (append_new(w->hints, h) < 0)
        return FAILED;
    return OK;
}

/* The trace ids: (blob, width) when every record's is `width` > 0 bytes wide (as
 * `HexIds.of` packs them), else a list of bytes. */
static PyObject *
trace_ids(walker *w)
{
    Py_ssize_t width = w->n_traces ? w->traces[0].n : 0;
    int uniform = width > 0;
    for (Py_ssize_t i = 1; uniform && i < w->n_traces; i++)
        uniform = w->traces[i].n == width;
    if (uniform) {
        /* records are disjoint parts of the request: the ids fit in its size */
        PyObject *blob = PyBytes_FromStringAndSize(NULL, w->n_traces * width);
        if (blob == NULL)
            return NULL;
        char *out = PyBytes_AS_STRING(blob);
        for (Py_ssize_t i = 0; i < w->n_traces; i++)
            memcpy(out + i * width, w->traces[i].p, (size_t)width);
        return Py_BuildValue("(Nn)", blob, width);
    }
    PyObject *list = PyList_New(w->n_traces);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < w->n_traces; i++) {
        PyObject *id = PyBytes_FromStringAndSize((const char *)w->traces[i].p, w->traces[i].n);
        if (id == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, id);
    }
    return list;
}

/* -- Walk: one request, walked a take at a time --------------------------------------------
 * Where the walk is, at each level (0: the request, 1: the ResourceLogs being read, 2: the
 * ScopeLogs being read): the offset in raw of its next field, and its end (pos == end: none
 * being read). Each level's range lies within the one around it. */
enum { LEVELS = 3 };

typedef struct {
    PyObject_HEAD
    Py_buffer raw;
    PyObject *keys, *hint_key; /* w.keys and w.hint_key point into them */
    walker w;
    Py_ssize_t pos[LEVELS], end[LEVELS];
    int over; /* gave up (or failed): every take gives None */
    int busy; /* a take is running (a callback calling take again is refused) */
} WalkObject;

/* The next log record: 1 with its range in *pos, *end; 0 at the end of the request;
 * -1 where the walker does not read the request as the parser does (it gives up). */
static int
next_record(WalkObject *s, Py_ssize_t *pos, Py_ssize_t *end)
{
    /* the field each level holds the next level in: ExportLogsServiceRequest.resource_logs,
     * ResourceLogs.scope_logs, ScopeLogs.log_records */
    static const uint32_t inner[LEVELS] = {1, 2, 2};
    const uint8_t *buf = s->raw.buf;
    for (;;) {
        int level = LEVELS - 1;
        while (level >= 0 && s->pos[level] >= s->end[level])
            level--;
        if (level < 0)
            return 0;
        field f;
        if (read_field(buf, &s->pos[level], s->end[level], &f) < 0)
            return -1;
        if (f.number != inner[level])
            continue;
        if (f.wire_type != 2)
            return -1;
        Py_ssize_t start = f.data.p - buf;
        if (level == LEVELS - 1) {
            *pos = start;
            *end = start + f.data.n;
            return 1;
        }
        s->pos[level + 1] = start;
        s->end[level + 1] = start + f.data.n;
    }
}

static PyObject *
Walk_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *keys, *hint_key, *render, *hint_text, *severity;
    Py_buffer raw;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "Walk takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*O!O!OOO:Walk", &raw, &PyTuple_Type, &keys, &PyBytes_Type,
                          &hint_key, &render, &hint_text, &severity))
        return NULL;
    Py_ssize_t n_keys = PyTuple_GET_SIZE(keys);
    for (Py_ssize_t i = 0; i < n_keys; i++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(keys, i))) {
            PyBuffer_Release(&raw);
            PyErr_SetString(PyExc_TypeError, "Walk: unique_keys must be a tuple of bytes");
            return NULL;
        }
    }
    WalkObject *s = (WalkObject *)type->tp_alloc(type, 0);
    if (s == NULL) {
        PyBuffer_Release(&raw);
        return NULL;
    }
    /* tp_alloc zeroed the rest: no lists, no severities, the walk at the request's start */
    s->raw = raw;
    s->end[0] = raw.len;
    s->keys = Py_NewRef(keys);
    s->hint_key = Py_NewRef(hint_key);
    walker *w = &s->w;
    w->render = Py_NewRef(render);
    w->hint_text = Py_NewRef(hint_text);
    w->severity = Py_NewRef(severity);
    if (n_keys > MAX_KEYS) {
        s->over = 1;
        return (PyObject *)s;
    }
    w->n_keys = n_keys;
    for (Py_ssize_t i = 0; i < n_keys; i++) {
        PyObject *k = PyTuple_GET_ITEM(keys, i);
        w->keys[i].p = (const uint8_t *)PyBytes_AS_STRING(k);
        w->keys[i].n = PyBytes_GET_SIZE(k);
    }
    for (Py_ssize_t i = 0; i < n_keys; i++) {
        int seen = 0;
        for (Py_ssize_t j = 0; j < i; j++)
            seen |= key_is(w->keys[i], w->keys[j]);
        w->worst_rank += !seen;
    }
    w->hint_key.p = (const uint8_t *)PyBytes_AS_STRING(hint_key);
    w->hint_key.n = PyBytes_GET_SIZE(hint_key);
    return (PyObject *)s;
}

static void
Walk_dealloc(WalkObject *s)
{
    walker *w = &s->w;
    for (int i = 0; i < SEV_SLOTS; i++)
        Py_XDECREF(w->sev_out[i]);
    PyMem_Free(w->traces); /* (the column lists live only during a take) */
    PyMem_Free(w->pending);
    Py_XDECREF(w->render);
    Py_XDECREF(w->hint_text);
    Py_XDECREF(w->severity);
    Py_XDECREF(s->keys);
    Py_XDECREF(s->hint_key);
    if (s->raw.obj != NULL)
        PyBuffer_Release(&s->raw);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyObject *
Walk_take(WalkObject *s, PyObject *args)
{
    Py_ssize_t skip, n;
    if (!PyArg_ParseTuple(args, "nn:take", &skip, &n))
        return NULL;
    if (s->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Walk.take: called again during a take");
        return NULL;
    }
    if (s->over)
        Py_RETURN_NONE;
    walker *w = &s->w;
    PyObject *result = NULL;
    int rc = OK;
    Py_ssize_t pos, end;
    s->busy = 1;
    w->n_traces = 0;
    w->n_pending = 0;
    w->time_min = w->time_max = 0;
    if (!(w->bodies = PyList_New(0)) || !(w->severities = PyList_New(0)) ||
        !(w->times = PyList_New(0)) || !(w->uids = PyList_New(0)) ||
        !(w->hints = PyList_New(0))) {
        rc = FAILED;
        goto done;
    }
    for (Py_ssize_t i = 0; i < skip; i++) {
        int got = next_record(s, &pos, &end);
        if (got <= 0) {
            rc = got < 0 ? GIVE_UP : OK;
            break;
        }
    }
    for (Py_ssize_t i = 0; rc == OK && i < n; i++) {
        int got = next_record(s, &pos, &end);
        if (got <= 0) {
            rc = got < 0 ? GIVE_UP : OK;
            break;
        }
        rc = walk_record(w, (const uint8_t *)s->raw.buf, pos, end);
    }
    if (rc == OK)
        rc = ask(w);
    if (rc == GIVE_UP)
        result = Py_NewRef(Py_None);
    else if (rc == OK) {
        PyObject *traces = trace_ids(w);
        if (traces != NULL)
            result = Py_BuildValue("(OOONOOKK)", w->bodies, w->severities, w->times, traces,
                                   w->uids, w->hints, (unsigned long long)w->time_min,
                                   (unsigned long long)w->time_max);
    }
done:
    if (result == NULL || result == Py_None)
        s->over = 1; /* the records after these would not follow on from them */
    Py_CLEAR(w->bodies);
    Py_CLEAR(w->severities);
    Py_CLEAR(w->times);
    Py_CLEAR(w->uids);
    Py_CLEAR(w->hints);
    s->busy = 0;
    return result;
}

static PyMethodDef Walk_methods[] = {
    {"take", (PyCFunction)Walk_take, METH_VARARGS,
     "take(skip, n) -> the columns of the n records after the next `skip`, or None"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WalkType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "via_otlp.receive._wirewalk.Walk",
    .tp_basicsize = sizeof(WalkObject),
    .tp_dealloc = (destructor)Walk_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Walk(raw, unique_keys, hint_key, render, hint_text, severity): see take",
    .tp_methods = Walk_methods,
    .tp_new = Walk_new,
};

/* xxh64_utf8(strs) -> bytes: the XXH64 (seed 0) of each str's UTF-8, as native uint64s, one
 * per item: what ``[xxhash.xxh64_intdigest(s.encode()) for s in strs]`` gives (the engine's
 * distinct-id counting, `Engine._count_unique`), without a Python call per id. A str that
 * does not encode (a lone surrogate) raises as `str.encode` does; an item that is not a str
 * raises TypeError. */
#define XXP1 0x9E3779B185EBCA87ULL
#define XXP2 0xC2B2AE3D27D4EB4FULL
#define XXP3 0x165667B19E3779F9ULL
#define XXP4 0x85EBCA77C2B2AE63ULL
#define XXP5 0x27D4EB2F165667C5ULL

static inline uint64_t
xx_rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

/* `n` (4 or 8) bytes at `p`, little-endian, on any machine (compilers make it one load). */
static inline uint64_t
xx_read(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline uint64_t
xx_round(uint64_t acc, uint64_t input)
{
    acc += input * XXP2;
    acc = xx_rotl(acc, 31);
    return acc * XXP1;
}

static inline uint64_t
xx_merge(uint64_t acc, uint64_t val)
{
    acc ^= xx_round(0, val);
    return acc * XXP1 + XXP4;
}

static uint64_t
xxh64(const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len;
    uint64_t h;
    if (len >= 32) {
        const uint8_t *limit = end - 32;
        uint64_t v1 = XXP1 + XXP2, v2 = XXP2, v3 = 0, v4 = 0 - XXP1;
        do {
            v1 = xx_round(v1, xx_read(p, 8));
            v2 = xx_round(v2, xx_read(p + 8, 8));
            v3 = xx_round(v3, xx_read(p + 16, 8));
            v4 = xx_round(v4, xx_read(p + 24, 8));
            p += 32;
        } while (p <= limit);
        h = xx_rotl(v1, 1) + xx_rotl(v2, 7) + xx_rotl(v3, 12) + xx_rotl(v4, 18);
        h = xx_merge(h, v1);
        h = xx_merge(h, v2);
        h = xx_merge(h, v3);
        h = xx_merge(h, v4);
    } else {
        h = XXP5;
    }
    h += (uint64_t)len;
    while ((size_t)(end - p) >= 8) {  /* (not p + 8 <= end: past the end is UB) */
        h ^= xx_round(0, xx_read(p, 8));
        h = xx_rotl(h, 27) * XXP1 + XXP4;
        p += 8;
    }
    if ((size_t)(end - p) >= 4) {
        h ^= xx_read(p, 4) * XXP1;
        h = xx_rotl(h, 23) * XXP2 + XXP3;
        p += 4;
    }
    while (p < end) {
        h ^= (uint64_t)(*p) * XXP5;
        h = xx_rotl(h, 11) * XXP1;
        p++;
    }
    h ^= h >> 33;
    h *= XXP2;
    h ^= h >> 29;
    h *= XXP3;
    h ^= h >> 32;
    return h;
}

static PyObject *
xxh64_utf8(PyObject *module, PyObject *arg)
{
    (void)module;
    PyObject *seq = PySequence_Fast(arg, "xxh64_utf8: expected a sequence of str");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(uint64_t));
    if (out == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    char *dst = PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = items[i];
        if (!PyUnicode_Check(item)) {
            PyErr_Format(PyExc_TypeError, "xxh64_utf8: item %zd is not a str", i);
            Py_DECREF(out);
            Py_DECREF(seq);
            return NULL;
        }
        Py_ssize_t size;
        const char *utf8 = PyUnicode_AsUTF8AndSize(item, &size);
        if (utf8 == NULL) {
            Py_DECREF(out);
            Py_DECREF(seq);
            return NULL;
        }
        uint64_t h = xxh64((const uint8_t *)utf8, (size_t)size);
        memcpy(dst + i * (Py_ssize_t)sizeof(uint64_t), &h, sizeof(uint64_t));
    }
    Py_DECREF(seq);
    return out;
}

/* attribute_types(record, wire_types, names): the (key, type name) of each attribute of the
 * LogRecord whose wire bytes are `record`, as `normalise._attribute_types` gives them from the
 * parsed record; None where it does not read them as the parser does (a value given twice, a
 * group, a key that is not UTF-8): Python reads them then. Meant for a record serialised by
 * the parser (one value a KeyValue; fields of another wire type are unknown ones, after).
 *   wire_types  bytes: [n] the wire type of AnyValue field n (0xFF: not one of its values)
 *   names       tuple of str: [n] the type name of AnyValue field n; [0] of no value */
static PyObject *
attribute_types(PyObject *self, PyObject *args)
{
    Py_buffer rec, wt;
    PyObject *names;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*O!:attribute_types", &rec, &wt, &PyTuple_Type, &names))
        return NULL;
    const uint8_t *buf = rec.buf, *wire = wt.buf;
    Py_ssize_t n_wire = wt.len < PyTuple_GET_SIZE(names) ? wt.len : PyTuple_GET_SIZE(names);
    PyObject *out = PyList_New(0);
    Py_ssize_t pos = 0;
    int give_up = 0;
    while (out != NULL && !give_up && pos < rec.len) {
        field f;
        if (read_field(buf, &pos, rec.len, &f) < 0) {
            give_up = 1;
            break;
        }
        if (f.number != 6)
            continue;
        if (f.wire_type != 2) {
            give_up = 1;
            break;
        }
        span key = {(const uint8_t *)"", 0};
        Py_ssize_t kind = 0, kp = 0;
        int has_value = 0;
        while (kp < f.data.n) {
            field k;
            if (read_field(f.data.p, &kp, f.data.n, &k) < 0) {
                give_up = 1;
                break;
            }
            if (k.number == 1 && k.wire_type == 2)
                key = k.data;
            else if (k.number == 2 && k.wire_type == 2) {
                if (has_value) { /* the parser merges the two */
                    give_up = 1;
                    break;
                }
                has_value = 1;
                Py_ssize_t vp = 0;
                while (vp < k.data.n) {
                    field v;
                    if (read_field(k.data.p, &vp, k.data.n, &v) < 0) {
                        give_up = 1;
                        break;
                    }
                    if (v.number < (uint32_t)n_wire && wire[v.number] == v.wire_type)
                        kind = (Py_ssize_t)v.number; /* a oneof: the last one set */
                }
            }
            else if (k.number == 1 || k.number == 2) {
                give_up = 1; /* a known field of another wire type: left to the parser */
                break;
            }
        }
        if (give_up)
            break;
        PyObject *text = PyUnicode_DecodeUTF8((const char *)key.p, key.n, NULL);
        if (text == NULL) {
            PyErr_Clear();
            give_up = 1;
            break;
        }
        PyObject *pair = PyTuple_Pack(2, text, PyTuple_GET_ITEM(names, kind));
        Py_DECREF(text);
        if (pair == NULL || PyList_Append(out, pair) < 0) {
            Py_XDECREF(pair);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(pair);
    }
    PyBuffer_Release(&rec);
    PyBuffer_Release(&wt);
    if (out == NULL)
        return NULL;
    if (give_up) {
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    PyObject *types = PyList_AsTuple(out);
    Py_DECREF(out);
    return types;
}

static PyMethodDef module_methods[] = {
    {"attribute_types", (PyCFunction)attribute_types, METH_VARARGS,
     "attribute_types(record, wire_types, names) -> tuple | None: (key, type) of each attribute"},
    {"xxh64_utf8", (PyCFunction)xxh64_utf8, METH_O,
     "xxh64_utf8(strs) -> bytes: XXH64 (seed 0) of each str's UTF-8, native uint64 each"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_wirewalk",
    "A compiled walker of OTLP logs requests into columns (see via_otlp/receive/normalise.py).",
    -1, module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__wirewalk(void)
{
    if (PyType_Ready(&WalkType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "ABI_VERSION", ABI_VERSION) < 0 ||
        PyModule_AddIntConstant(m, "MAX_RENDER_DEPTH", MAX_RENDER_DEPTH) < 0 ||
        PyModule_AddType(m, &WalkType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
