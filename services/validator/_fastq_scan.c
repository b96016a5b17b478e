/*
 * The FASTQ record scanner behind services/validator/fastq.py.
 *
 * A genome's FASTQ pair is 50-100 GB of gzip; the checks must run at close to the speed
 * of decompression. Python cannot touch each record, and even whole-block bytes
 * operations walked the data a dozen times. This walks it once: each record's four lines
 * are found with memchr, the rules are checked where the record lies, and the sequence
 * and quality lines go through branch-free loops that the compiler vectorises.
 *
 * scan(data) checks the whole records at the start of `data` (a bytes-like object) and
 * stops at the first fatal fault or where fewer than four complete lines are left; the
 * caller carries `data[consumed:]` over to the next block. It holds no state between
 * calls, so the Python side owns the file-wide state (counts, first problem of each code,
 * the digest of read names). The GIL is released while scanning.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef enum { FAULT_NONE, FAULT_HEADER, FAULT_CRLF, FAULT_SEPARATOR, FAULT_LENGTH } Fault;

static const char *const FAULT_CODES[] = {
    NULL, "fastq.bad_header", "fastq.crlf", "fastq.bad_separator", "fastq.length_mismatch",
};

typedef struct {
    Py_ssize_t consumed;
    Py_ssize_t reads;
    long long bases;
    long long q30_bases;
    Py_ssize_t min_length; /* -1: no record */
    Py_ssize_t max_length;
    int low_quality;  /* a quality character in '!'..':' (impossible in Phred+64) */
    int high_quality; /* a quality character in 'K'..'~' (rare in Illumina Phred+33) */
    Py_ssize_t read1, read2, unnumbered;
    Fault fault;
    Py_ssize_t fault_record, sequence_length, quality_length;
    Py_ssize_t bad_base_record; /* -1: none */
    const unsigned char *bad_base_sequence;
    Py_ssize_t bad_base_length;
    Py_ssize_t bad_quality_record; /* -1: none */
    unsigned char *names;
    Py_ssize_t names_length;
} Scan;

/* The sequence and quality loops are written with GCC/Clang vector types, 16 bytes a
 * step on any architecture (plain loops were left scalar or vectorised poorly). A line's
 * last partial step reloads the line's final 16 bytes, with the bytes already seen masked
 * off where they would count twice. Lines under 16 bytes take the scalar loop. */
typedef unsigned char Bytes16 __attribute__((vector_size(16)));

static inline Bytes16 load16(const unsigned char *p) {
    Bytes16 x;
    memcpy(&x, p, 16);
    return x;
}

static inline int any16(Bytes16 v) {
    uint64_t a, b;
    memcpy(&a, &v, 8);
    memcpy(&b, (const unsigned char *)&v + 8, 8);
    return (a | b) != 0;
}

/* The sum of 16 byte lanes whose total is below 65536. */
static inline Py_ssize_t sum16(Bytes16 v) {
    uint64_t a, b;
    memcpy(&a, &v, 8);
    memcpy(&b, (const unsigned char *)&v + 8, 8);
    const uint64_t even = 0x00ff00ff00ff00ffULL;
    uint64_t s = (a & even) + ((a >> 8) & even) + (b & even) + ((b >> 8) & even);
    return (Py_ssize_t)((s * 0x0001000100010001ULL) >> 48);
}

/* Lanes outside ACGTNacgtn. `c | 0x20` folds case, and only 'A' and 'a' fold to 'a'
 * (likewise for the others), so five compares decide. */
static inline Bytes16 odd_bases(Bytes16 x) {
    x |= 0x20;
    return ~(Bytes16)((x == 'a') | (x == 'c') | (x == 'g') | (x == 't') | (x == 'n'));
}

/* 1 if any byte of the sequence is outside ACGTNacgtn. */
static inline int bad_bases(const unsigned char *s, Py_ssize_t n) {
    if (n < 16) {
        unsigned char any = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            unsigned char x = s[i] | 0x20;
            any |= (x != 'a') & (x != 'c') & (x != 'g') & (x != 't') & (x != 'n');
        }
        return any;
    }
    Bytes16 bad = {0};
    Py_ssize_t i = 0;
    for (; i + 16 <= n; i += 16) bad |= odd_bases(load16(s + i));
    if (i < n) bad |= odd_bases(load16(s + n - 16)); /* overlap: an OR does not mind */
    return any16(bad);
}

/* Quality characters: any outside '!'..'~' (which includes a newline), the count of Q30
 * or above ('?'..'~'), and whether any lies in '!'..':' (impossible in Phred+64) or
 * 'K'..'~' (rare in Phred+33). */
typedef struct {
    unsigned char invalid, low, high;
    Py_ssize_t q30;
} Quality;

static inline Quality quality(const unsigned char *q, Py_ssize_t n) {
    Quality out = {0, 0, 0, 0};
    if (n < 16) {
        for (Py_ssize_t i = 0; i < n; i++) {
            unsigned char c = q[i];
            out.invalid |= (unsigned char)(c - 33) > 93;
            out.q30 += (unsigned char)(c - 63) < 64;
            out.low |= (unsigned char)(c - 33) < 26;
            out.high |= (unsigned char)(c - 75) < 52;
        }
        return out;
    }
    Bytes16 invalid = {0}, low = {0}, high = {0};
    Py_ssize_t i = 0;
    while (i + 16 <= n) {
        Bytes16 q30 = {0}; /* per-lane counts: at most 255 steps before they are summed */
        Py_ssize_t stop = n - i > 16 * 255 ? i + 16 * 255 : n;
        for (; i + 16 <= stop; i += 16) {
            Bytes16 c = load16(q + i);
            invalid |= (Bytes16)((Bytes16)(c - 33) > 93);
            q30 -= (Bytes16)((Bytes16)(c - 63) < 64);
            low |= (Bytes16)((Bytes16)(c - 33) < 26);
            high |= (Bytes16)((Bytes16)(c - 75) < 52);
        }
        out.q30 += sum16(q30);
    }
    if (i < n) {
        static const Bytes16 lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
        Bytes16 c = load16(q + n - 16);
        Bytes16 fresh = (Bytes16)(lane >= (unsigned char)(16 - (n - i)));
        invalid |= (Bytes16)((Bytes16)(c - 33) > 93);
        low |= (Bytes16)((Bytes16)(c - 33) < 26);
        high |= (Bytes16)((Bytes16)(c - 75) < 52);
        out.q30 += sum16(fresh & (Bytes16)((Bytes16)(c - 63) < 64) & 1);
    }
    out.invalid = (unsigned char)any16(invalid);
    out.low = (unsigned char)any16(low);
    out.high = (unsigned char)any16(high);
    return out;
}

static inline int name_number(const unsigned char *h, Py_ssize_t hlen, Py_ssize_t *name_length) {
    /* The read name (after '@', before the comment, without a /1 or /2 suffix) and its read
     * number: 1 or 2 from the suffix or from a Casava comment "1:N:..."; 0 if none. The
     * comment starts at the first space or TAB: `samtools fastq -T` puts its tags after a
     * TAB, Casava after a space. The space is looked for first with memchr (the usual
     * separator), a TAB only in the part before it. */
    const unsigned char *name = h + 1;
    Py_ssize_t rest = hlen - 1;
    const unsigned char *space = memchr(name, ' ', (size_t)rest);
    Py_ssize_t n = space ? space - name : rest;
    const unsigned char *tab = memchr(name, '\t', (size_t)n);
    if (tab) {
        space = tab;
        n = tab - name;
    }
    int number = 0;
    if (n >= 2 && name[n - 2] == '/' && (name[n - 1] == '1' || name[n - 1] == '2')) {
        number = name[n - 1] - '0';
        n -= 2;
    } else if (space && (h + hlen) - (space + 1) >= 2 && (space[1] == '1' || space[1] == '2') &&
               space[2] == ':') {
        number = space[1] - '0';
    }
    *name_length = n;
    return number;
}

static void scan_records(const unsigned char *data, Py_ssize_t size, Scan *s) {
    const unsigned char *p = data, *end = data + size;
    for (;;) {
        const unsigned char *h = p;
        const unsigned char *e1 = memchr(h, '\n', (size_t)(end - h));
        if (!e1) break;
        const unsigned char *seq = e1 + 1;
        const unsigned char *e2 = memchr(seq, '\n', (size_t)(end - seq));
        if (!e2) break;
        const unsigned char *plus = e2 + 1, *e3, *qual, *e4;
        Py_ssize_t slen = e2 - seq;
        Quality qs;
        /* The usual record: a bare '+' and a quality line as long as the sequence. Taking
         * that for granted spares two memchr calls; a newline inside the presumed quality
         * line (or any other bad character) sends the record the careful way. */
        if (end - plus > slen + 2 && plus[0] == '+' && plus[1] == '\n' && plus[slen + 2] == '\n' &&
            !(qs = quality(plus + 2, slen)).invalid) {
            e3 = plus + 1;
            qual = plus + 2;
            e4 = qual + slen;
        } else {
            e3 = memchr(plus, '\n', (size_t)(end - plus));
            if (!e3) break;
            qual = e3 + 1;
            e4 = memchr(qual, '\n', (size_t)(end - qual));
            if (!e4) break;
            qs = quality(qual, e4 - qual);
        }

        Py_ssize_t hlen = e1 - h, plen = e3 - plus, qlen = e4 - qual;
        s->fault_record = s->reads;
        if (hlen == 0 || h[0] != '@') {
            s->fault = FAULT_HEADER;
            break;
        }
        if (memchr(h, '\r', (size_t)hlen)) {
            s->fault = FAULT_CRLF;
            break;
        }
        if (plen == 0 || plus[0] != '+' ||
            (plen > 1 && (plen != hlen || memcmp(plus + 1, h + 1, (size_t)(hlen - 1)) != 0))) {
            s->fault = FAULT_SEPARATOR;
            break;
        }
        if (slen != qlen) {
            s->fault = FAULT_LENGTH;
            s->sequence_length = slen;
            s->quality_length = qlen;
            break;
        }

        if (s->bad_base_record < 0 && bad_bases(seq, slen)) {
            s->bad_base_record = s->reads;
            s->bad_base_sequence = seq;
            s->bad_base_length = slen;
        }
        if (qs.invalid && s->bad_quality_record < 0) s->bad_quality_record = s->reads;
        s->q30_bases += qs.q30;
        s->low_quality |= qs.low != 0;
        s->high_quality |= qs.high != 0;

        Py_ssize_t nlen;
        int number = name_number(h, hlen, &nlen);
        if (number == 1) s->read1++;
        else if (number == 2) s->read2++;
        else s->unnumbered++;
        memcpy(s->names + s->names_length, h + 1, (size_t)nlen);
        s->names[s->names_length + nlen] = '\n';
        s->names_length += nlen + 1;

        s->reads++;
        s->bases += slen;
        if (s->min_length < 0 || slen < s->min_length) s->min_length = slen;
        if (slen > s->max_length) s->max_length = slen;
        p = e4 + 1;
    }
    s->consumed = p - data;
}

static PyTypeObject *BlockType;

static PyStructSequence_Field block_fields[] = {
    {"consumed", "bytes of whole records checked: the caller carries the rest over"},
    {"reads", "records checked"},
    {"bases", "sum of the records' sequence lengths"},
    {"min_length", "shortest sequence, or None without records"},
    {"max_length", "longest sequence (0 without records)"},
    {"q30_bases", "quality characters from '?' (Q30 in Phred+33) to '~'"},
    {"low_quality", "a quality character in '!'..':' was seen (rules out Phred+64)"},
    {"high_quality", "a quality character in 'K'..'~' was seen"},
    {"read1", "records whose name carries read number 1 (/1, or a Casava comment '1:...')"},
    {"read2", "records whose name carries read number 2"},
    {"unnumbered", "records whose name carries no read number"},
    {"names", "each record's read name (no '@', /1 /2, or comment after a space or TAB), each ending in a newline"},
    {"fault", "problem code of the fatal fault that stopped the scan, or None"},
    {"fault_record", "index in this block of the record with the fault, or None"},
    {"sequence_length", "for fastq.length_mismatch: the sequence's length"},
    {"quality_length", "for fastq.length_mismatch: the quality's length"},
    {"bad_base_record", "index in this block of the first record with a base outside ACGTN, or None"},
    {"bad_base_sequence", "that record's sequence line, or None"},
    {"bad_quality_record", "index of the first record with a quality outside '!'..'~', or None"},
    {NULL, NULL},
};

static PyStructSequence_Desc block_desc = {
    "services.validator._fastq_scan.Block",
    "What scan() found in the whole records at the start of a block of FASTQ bytes.",
    block_fields,
    19,
};

static PyObject *index_or_none(Py_ssize_t value) {
    if (value < 0) Py_RETURN_NONE;
    return PyLong_FromSsize_t(value);
}

static PyObject *scan(PyObject *module, PyObject *arg) {
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    Scan s;
    memset(&s, 0, sizeof s);
    s.min_length = -1;
    s.bad_base_record = -1;
    s.bad_quality_record = -1;
    /* Names are at most the headers, which are at most the data. */
    s.names = PyMem_RawMalloc((size_t)view.len + 1);
    if (!s.names) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    scan_records((const unsigned char *)view.buf, view.len, &s);
    Py_END_ALLOW_THREADS

    PyObject *block = PyStructSequence_New(BlockType);
    if (block) {
        PyObject *items[19] = {
            PyLong_FromSsize_t(s.consumed),
            PyLong_FromSsize_t(s.reads),
            PyLong_FromLongLong(s.bases),
            index_or_none(s.min_length),
            PyLong_FromSsize_t(s.max_length),
            PyLong_FromLongLong(s.q30_bases),
            PyBool_FromLong(s.low_quality),
            PyBool_FromLong(s.high_quality),
            PyLong_FromSsize_t(s.read1),
            PyLong_FromSsize_t(s.read2),
            PyLong_FromSsize_t(s.unnumbered),
            PyBytes_FromStringAndSize((const char *)s.names, s.names_length),
            s.fault ? PyUnicode_FromString(FAULT_CODES[s.fault]) : Py_NewRef(Py_None),
            index_or_none(s.fault ? s.fault_record : -1),
            PyLong_FromSsize_t(s.sequence_length),
            PyLong_FromSsize_t(s.quality_length),
            index_or_none(s.bad_base_record),
            s.bad_base_record >= 0
                ? PyBytes_FromStringAndSize((const char *)s.bad_base_sequence, s.bad_base_length)
                : Py_NewRef(Py_None),
            index_or_none(s.bad_quality_record),
        };
        int failed = 0;
        for (int i = 0; i < 19; i++) {
            if (!items[i]) failed = 1;
            PyStructSequence_SetItem(block, i, items[i]);
        }
        if (failed) Py_CLEAR(block);
    }
    PyMem_RawFree(s.names);
    PyBuffer_Release(&view);
    return block;
}

/*
 * count_alignments(library, path, reference, required_fields, threads): every record of a
 * CRAM or BAM decoded by htslib, in one pass that yields what samtools flagstat counts
 * (QC-passed records, mapped, duplicates) and the bases of the primary reads.
 *
 * A Python loop over pysam records runs at a tenth of samtools' speed, and samtools'
 * own commands need two passes for counts and bases. The project has no htslib headers
 * to build against, so the handful of htslib calls are looked up in the shared library
 * the caller names (Debian's libhts.so.3 beside samtools, else pysam's copy), and the
 * record layout below is htslib's bam1_t, whose ABI is fixed for the libhts.so.3 soname
 * (htslib >= 1.10). The GIL is released while reading.
 */
#include <dlfcn.h>

typedef struct {
    int64_t pos;
    int32_t tid;
    uint16_t bin;
    uint8_t qual;
    uint8_t l_extranul;
    uint16_t flag;
    uint16_t l_qname;
    uint32_t n_cigar;
    int32_t l_qseq;
    int32_t mtid;
    int64_t mpos;
    int64_t isize;
} HtsRecordCore;

typedef struct {
    HtsRecordCore core;
    uint64_t id;
    uint8_t *data;
    int l_data;
    uint32_t m_data;
    uint32_t mempolicy;
} HtsRecord;

_Static_assert(sizeof(HtsRecordCore) == 48, "htslib's bam1_core_t is 48 bytes");
_Static_assert(offsetof(HtsRecord, data) == 56, "htslib's bam1_t.data follows core and id");

/* The head of htslib's htsFile, as far as its file pointer (for a CRAM, the cram_fd that
 * cram_seek takes); fixed for the libhts.so.3 soname like bam1_t. */
typedef struct {
    uint32_t bits; /* is_bin:1, is_write:1, is_be:1, is_cram:1, is_bgzf:1, ... */
    int64_t lineno;
    struct { size_t l, m; char *s; } line;
    char *fn, *fn_aux;
    void *fp;
} HtsFileHead;

_Static_assert(offsetof(HtsFileHead, fp) == 56, "htslib's htsFile.fp follows lineno, line, fn and fn_aux");
#define HTS_FILE_IS_CRAM(f) ((((const HtsFileHead *)(f))->bits >> 3) & 1)

enum { CRAM_OPT_REQUIRED_FIELDS = 18 }; /* htslib hts.h, enum hts_fmt_option */
enum { FLAG_UNMAPPED = 0x4, FLAG_SECONDARY = 0x100, FLAG_QC_FAIL = 0x200, FLAG_DUPLICATE = 0x400,
       FLAG_SUPPLEMENTARY = 0x800 };

typedef struct {
    void *(*open)(const char *, const char *);
    int (*set_opt)(void *, int, ...);
    int (*set_fai_filename)(void *, const char *);
    int (*set_threads)(void *, int);
    void *(*header_read)(void *);
    void (*header_destroy)(void *);
    HtsRecord *(*record_init)(void);
    void (*record_destroy)(HtsRecord *);
    int (*read)(void *, void *, HtsRecord *);
    int (*close)(void *);
    int (*cram_seek)(void *, long, int);
} Htslib;

static int load_htslib(const char *library, Htslib *h) {
    void *so = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (!so) return 0;
    struct { void **slot; const char *name; } symbols[] = {
        {(void **)&h->open, "hts_open"},
        {(void **)&h->set_opt, "hts_set_opt"},
        {(void **)&h->set_fai_filename, "hts_set_fai_filename"},
        {(void **)&h->set_threads, "hts_set_threads"},
        {(void **)&h->header_read, "sam_hdr_read"},
        {(void **)&h->header_destroy, "sam_hdr_destroy"},
        {(void **)&h->record_init, "bam_init1"},
        {(void **)&h->record_destroy, "bam_destroy1"},
        {(void **)&h->read, "sam_read1"},
        {(void **)&h->close, "hts_close"},
        {(void **)&h->cram_seek, "cram_seek"},
    };
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
        *symbols[i].slot = dlsym(so, symbols[i].name);
        if (!*symbols[i].slot) return 0;
    }
    return 1; /* the library stays loaded: the process reads many files */
}

/* Bases a CIGAR says the read has: M, I, S, = and X consume the query. */
static long long cigar_query_length(const HtsRecord *r) {
    const uint32_t *cigar = (const uint32_t *)(r->data + r->core.l_qname);
    long long length = 0;
    for (uint32_t i = 0; i < r->core.n_cigar; i++) {
        uint32_t op = cigar[i] & 0xf;
        if (op == 0 || op == 1 || op == 4 || op == 7 || op == 8) length += cigar[i] >> 4;
    }
    return length;
}

typedef struct {
    long long records, passed, mapped, duplicates, primary_bases;
    long long unmapped_primaries; /* whose bases only a decoded sequence tells */
    int status; /* 0 read whole; 1 cannot open; 2 no header; 3 a record failed to decode or the
                 * part ended before its records; 4 cannot seek to the part */
} AlignmentCounts;

/* The records of one part of the file: from the container at byte `offset` (0: the first),
 * `limit` records, or all to the end of the file if `limit` is negative. */
static void count_records(const Htslib *h, const char *path, const char *reference, int fields,
                          int threads, long long offset, long long limit, AlignmentCounts *c) {
    void *fp = h->open(path, "r");
    if (!fp) {
        c->status = 1;
        return;
    }
    if (reference) h->set_fai_filename(fp, reference);
    if (fields) h->set_opt(fp, CRAM_OPT_REQUIRED_FIELDS, fields);
    if (threads > 1) h->set_threads(fp, threads);
    void *header = h->header_read(fp);
    if (!header) {
        c->status = 2;
        h->close(fp);
        return;
    }
    /* No record has been read, so no container is held: the next one read is the one at
     * `offset`. */
    if (offset > 0 && (!HTS_FILE_IS_CRAM(fp) ||
                       h->cram_seek(((HtsFileHead *)fp)->fp, (long)offset, SEEK_SET) != 0)) {
        c->status = 4;
        h->header_destroy(header);
        h->close(fp);
        return;
    }
    HtsRecord *r = h->record_init();
    int got = 0;
    while ((limit < 0 || c->records < limit) && (got = h->read(fp, header, r)) >= 0) {
        uint16_t flag = r->core.flag;
        c->records++;
        if (!(flag & FLAG_QC_FAIL)) {
            c->passed++;
            if (!(flag & FLAG_UNMAPPED)) c->mapped++;
            if (flag & FLAG_DUPLICATE) c->duplicates++;
        }
        if (!(flag & (FLAG_SECONDARY | FLAG_SUPPLEMENTARY))) {
            c->primary_bases += r->core.l_qseq > 0 ? r->core.l_qseq : cigar_query_length(r);
            c->unmapped_primaries += (flag & FLAG_UNMAPPED) != 0;
        }
    }
    /* htslib returns -1 at the end of the file, less on a record it could not decode. */
    c->status = got < -1 || (limit >= 0 && c->records < limit) ? 3 : 0;
    h->record_destroy(r);
    h->header_destroy(header);
    if (h->close(fp) != 0 && c->status == 0) c->status = 3;
}

static PyObject *counts_tuple(const AlignmentCounts *c) {
    return Py_BuildValue("(iLLLLL)", c->status, c->records, c->passed, c->mapped, c->duplicates,
                         c->primary_bases);
}

static PyObject *part_counts_tuple(const AlignmentCounts *c) {
    return Py_BuildValue("(iLLLLLL)", c->status, c->records, c->passed, c->mapped, c->duplicates,
                         c->primary_bases, c->unmapped_primaries);
}

static int loaded_htslib(const char *library, Htslib *h) {
    if (load_htslib(library, h)) return 1;
    const char *why = dlerror();
    PyErr_Format(PyExc_ImportError, "htslib cannot be loaded from %s: %s", library,
                 why ? why : "a function is missing");
    return 0;
}

static PyObject *count_alignments(PyObject *self, PyObject *args) {
    const char *library, *path, *reference;
    int fields, threads;
    if (!PyArg_ParseTuple(args, "sszii", &library, &path, &reference, &fields, &threads)) return NULL;
    Htslib h;
    if (!loaded_htslib(library, &h)) return NULL;
    AlignmentCounts c = {0};
    Py_BEGIN_ALLOW_THREADS
    count_records(&h, path, reference, fields, threads, 0, -1, &c);
    Py_END_ALLOW_THREADS
    return counts_tuple(&c);
}

/*
 * count_alignment_parts(library, path, reference, parts): a CRAM cut at container boundaries
 * into parts, each (offset, records, required_fields) decoded by its own htslib reader on its
 * own thread, asked for what that part's checks need. htslib's decoding threads leave the turning of each record into a
 * bam1_t (packing its bases) to the one thread that reads, which then bounds the pass;
 * readers of their own share the whole of that work between the cores.
 */
#include <malloc.h>
#include <pthread.h>

/* htslib allocates and frees each slice's blocks (megabytes) as it goes. A reader on a
 * thread of its own gets a glibc arena of its own, whose freed top is handed back to the
 * kernel at once and faulted in again for the next slice: a million page faults and a
 * second of system time on a 2 GB CRAM. Fixed thresholds (which also stop glibc's own
 * raising of the mmap threshold, the reason the first reader does not suffer) keep the
 * blocks on the heap and the heap's top while the process reads; what a pass frees above
 * the trim threshold still goes back. Set once, for the process. */
#define BLOCKS_ON_HEAP (32 << 20)  /* glibc's largest mmap threshold on 64-bit */
#define HEAP_KEPT (128 << 20)

static void keep_slices_on_heap(void) {
    static int done;
    if (done) return;
    done = 1;
    mallopt(M_MMAP_THRESHOLD, BLOCKS_ON_HEAP);
    mallopt(M_TRIM_THRESHOLD, HEAP_KEPT);
}

typedef struct {
    const Htslib *h;
    const char *path, *reference;
    int fields;
    long long offset, limit;
    AlignmentCounts counts;
} Part;

static void *count_part(void *arg) {
    Part *p = arg;
    count_records(p->h, p->path, p->reference, p->fields, 1, p->offset, p->limit, &p->counts);
    return NULL;
}

#define MAX_PARTS 64

static PyObject *count_alignment_parts(PyObject *self, PyObject *args) {
    const char *library, *path, *reference;
    PyObject *list;
    if (!PyArg_ParseTuple(args, "sszO!", &library, &path, &reference, &PyList_Type, &list)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(list);
    if (n < 1 || n > MAX_PARTS) return PyErr_Format(PyExc_ValueError, "1 to %d parts, not %zd", MAX_PARTS, n);
    Htslib h;
    if (!loaded_htslib(library, &h)) return NULL;
    Part parts[MAX_PARTS];
    memset(parts, 0, sizeof parts);
    for (Py_ssize_t i = 0; i < n; i++) {
        Part *p = &parts[i];
        if (!PyArg_ParseTuple(PyList_GET_ITEM(list, i), "LLi;a part is (offset, records, required_fields)",
                              &p->offset, &p->limit, &p->fields))
            return NULL;
        p->h = &h;
        p->path = path;
        p->reference = reference;
    }
    pthread_t threads[MAX_PARTS];
    int started[MAX_PARTS] = {0};
    if (n > 1) keep_slices_on_heap();
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 1; i < n; i++) started[i] = pthread_create(&threads[i], NULL, count_part, &parts[i]) == 0;
    count_part(&parts[0]);
    for (Py_ssize_t i = 1; i < n; i++) {
        if (started[i]) pthread_join(threads[i], NULL);
        else count_part(&parts[i]); /* no thread to be had: read it here */
    }
    Py_END_ALLOW_THREADS
    PyObject *out = PyList_New(n);
    if (!out) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = part_counts_tuple(&parts[i].counts);
        if (!item) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, item);
    }
    return out;
}

/*
 * scan_vcf(data, limits, columns, first_record): the per-record header checks of
 * services/validator/variants.py over the whole lines at the start of `data`, so that a
 * million-record VCF is not split and compared field by field in Python.
 *
 * `limits` maps each declared contig (bytes) to its last allowed position (length + 1).
 * Lines starting with '#' and blank lines are skipped; a record's fields are found in
 * place. What this cannot settle alone is handed back as an event for Python to judge
 * with the same rules as before: ALT alleles other than bases, '*' or '.' (symbolic
 * alleles, breakends) go back as ("alleles", ...) to be matched against the ALT grammar.
 * Returns (consumed, records, events); each event is (kind, record, where, a, b). The GIL
 * is let go while the lines are walked, so the pass can run beside htslib's.
 */
static int all_bases(const char *p, Py_ssize_t n) {
    if (n == 0) return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        switch (p[i]) {
        case 'A': case 'C': case 'G': case 'T': case 'N':
        case 'a': case 'c': case 'g': case 't': case 'n': break;
        default: return 0;
        }
    }
    return 1;
}

/* 1: every ALT allele is bases, '*' or '.'; 0: some allele needs the full grammar. */
static int plain_alts(const char *p, Py_ssize_t n) {
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i <= n; i++) {
        if (i == n || p[i] == ',') {
            Py_ssize_t len = i - start;
            const char *a = p + start;
            if (!(all_bases(a, len) || (len == 1 && (a[0] == '*' || a[0] == '.')))) return 0;
            start = i + 1;
        }
    }
    return 1;
}

/* GT: allele indexes or '.', joined by '/' or '|', optionally led by one; each index
 * below `alleles`. */
static int good_genotype(const char *p, Py_ssize_t n, long long alleles) {
    Py_ssize_t i = 0;
    if (n > 0 && (p[0] == '/' || p[0] == '|')) i = 1;
    if (i >= n) return 0;
    for (;;) {
        if (i < n && p[i] == '.') {
            i++;
        } else if (i < n && p[i] >= '0' && p[i] <= '9') {
            long long index = 0;
            int big = 0;
            while (i < n && p[i] >= '0' && p[i] <= '9') {
                if (index > 1000000000LL) big = 1; else index = index * 10 + (p[i] - '0');
                i++;
            }
            if (big || index >= alleles) return 0;
        } else {
            return 0;
        }
        if (i == n) return 1;
        if (p[i] != '/' && p[i] != '|') return 0;
        i++;
    }
}

static int add_event(PyObject *events, const char *kind, Py_ssize_t record, const char *where,
                     Py_ssize_t where_len, const char *a, Py_ssize_t a_len, const char *b,
                     Py_ssize_t b_len) {
    PyObject *event = Py_BuildValue("(sny#y#y#)", kind, record, where, where_len, a, a_len, b, b_len);
    if (!event) return -1;
    int failed = PyList_Append(events, event);
    Py_DECREF(event);
    return failed;
}

#define VCF_MAX_FIELDS 10 /* the fixed nine and the start of the samples */

static PyObject *scan_vcf(PyObject *self, PyObject *args) {
    Py_buffer view;
    PyObject *limits;
    Py_ssize_t columns, record;
    if (!PyArg_ParseTuple(args, "y*O!nn", &view, &PyDict_Type, &limits, &columns, &record)) return NULL;
    const char *data = view.buf;
    Py_ssize_t len = view.len, at = 0, records = 0;
    PyObject *events = PyList_New(0);
    const char *last_chrom = NULL;
    Py_ssize_t last_chrom_len = -1;
    long long limit = -1; /* of the last contig; -1 not declared */
    int limit_digits = 0;
    if (!events) goto fail;
    /* The GIL is let go while lines are walked (the text pass runs beside htslib's) and
     * taken back only to look a contig up or hand an event over; `fail` is reached holding it. */
    PyThreadState *released = PyEval_SaveThread();
#define WITH_GIL(call) (PyEval_RestoreThread(released), (call))
#define WITHOUT_GIL() (released = PyEval_SaveThread())
    while (at < len) {
        const char *nl = memchr(data + at, '\n', (size_t)(len - at));
        if (!nl) break;
        const char *line = data + at;
        Py_ssize_t n = nl - line;
        at += n + 1;
        if (n > 0 && line[0] == '#') continue;
        while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == '\n')) n--;
        if (n == 0) continue;
        records++;
        record++;
        /* Field starts and ends, the first ten; the count of all. */
        const char *start[VCF_MAX_FIELDS];
        Py_ssize_t size[VCF_MAX_FIELDS];
        Py_ssize_t fields = 0, from = 0;
        for (Py_ssize_t i = 0; i <= n; i++) {
            if (i == n || line[i] == '\t') {
                if (fields < VCF_MAX_FIELDS) {
                    start[fields] = line + from;
                    size[fields] = i - from;
                }
                fields++;
                from = i + 1;
                if (fields == VCF_MAX_FIELDS && i < n) {
                    /* The rest are samples: counted here, walked below. */
                    const char *more = memchr(line + from, '\t', (size_t)(n - from));
                    fields++;
                    while (more) {
                        fields++;
                        more = memchr(more + 1, '\t', (size_t)(line + n - more - 1));
                    }
                    break;
                }
            }
        }
        /* chrom:pos, as the Python side names a record */
        Py_ssize_t where_len = size[0] + (fields > 1 ? 1 + size[1] : 0);
        const char *where = line;
        if (fields != columns && !(columns == 8 && fields == 9)) {
            char count[32];
            int c = snprintf(count, sizeof count, "%zd", fields);
            if (WITH_GIL(add_event(events, "columns", record, where, where_len, count, c, "", 0)) < 0)
                goto fail;
            WITHOUT_GIL();
            if (fields < 5) continue;
        }
        if (size[0] != last_chrom_len || memcmp(start[0], last_chrom, (size_t)size[0]) != 0) {
            PyEval_RestoreThread(released);
            PyObject *name = PyBytes_FromStringAndSize(start[0], size[0]);
            if (!name) goto fail;
            PyObject *found = PyDict_GetItemWithError(limits, name);
            Py_DECREF(name);
            if (!found && PyErr_Occurred()) goto fail;
            limit = found ? PyLong_AsLongLong(found) : -1;
            if (limit == -1 && PyErr_Occurred()) goto fail;
            WITHOUT_GIL();
            limit_digits = snprintf(NULL, 0, "%lld", limit);
            last_chrom = start[0];
            last_chrom_len = size[0];
        }
        if (limit < 0) {
            if (WITH_GIL(add_event(events, "contig", record, where, where_len, "", 0, "", 0)) < 0)
                goto fail;
            WITHOUT_GIL();
        } else if (size[1] >= limit_digits && limit > 1) {
            const char *pos = start[1];
            int digits = size[1] > 0;
            long long value = 0;
            int huge = size[1] > 18;
            for (Py_ssize_t i = 0; i < size[1]; i++) {
                if (pos[i] < '0' || pos[i] > '9') { digits = 0; break; }
                if (!huge) value = value * 10 + (pos[i] - '0');
            }
            if (digits && (huge || value > limit)) {
                if (WITH_GIL(add_event(events, "position", record, where, where_len, "", 0, "", 0)) < 0)
                    goto fail;
                WITHOUT_GIL();
            }
        }
        const char *ref = start[3], *alt = start[4];
        Py_ssize_t ref_len = size[3], alt_len = size[4];
        if (!all_bases(ref, ref_len) || !plain_alts(alt, alt_len)) {
            if (WITH_GIL(add_event(events, "alleles", record, where, where_len, ref, ref_len, alt,
                                   alt_len)) < 0)
                goto fail;
            WITHOUT_GIL();
        }
        if (fields > 9 && size[8] >= 2 && start[8][0] == 'G' && start[8][1] == 'T' &&
            (size[8] == 2 || start[8][2] == ':')) {
            long long alleles = 2;
            if (alt_len == 1 && alt[0] == '.') alleles = 1;
            else for (Py_ssize_t i = 0; i < alt_len; i++) alleles += alt[i] == ',';
            const char *sample = start[9];
            const char *end = line + n;
            while (sample <= end) {
                const char *tab = memchr(sample, '\t', (size_t)(end - sample));
                const char *stop = tab ? tab : end;
                const char *colon = memchr(sample, ':', (size_t)(stop - sample));
                const char *gt_end = colon ? colon : stop;
                if (!good_genotype(sample, gt_end - sample, alleles)) {
                    if (WITH_GIL(add_event(events, "genotype", record, where, where_len, sample,
                                           gt_end - sample, "", 0)) < 0)
                        goto fail;
                    WITHOUT_GIL();
                    break;
                }
                if (!tab) break;
                sample = tab + 1;
            }
        }
    }
    PyEval_RestoreThread(released);
#undef WITH_GIL
#undef WITHOUT_GIL
    PyBuffer_Release(&view);
    PyObject *result = Py_BuildValue("(nnN)", at, records, events);
    return result;
fail:
    Py_XDECREF(events);
    PyBuffer_Release(&view);
    return NULL;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_O,
     "scan(data, /) -> Block\n\nCheck and count the whole FASTQ records at the start of data."},
    {"count_alignments", count_alignments, METH_VARARGS,
     "count_alignments(library, path, reference, required_fields, threads, /)\n"
     "-> (status, records, passed, mapped, duplicates, primary_bases)\n\n"
     "Decode every record of a CRAM or BAM with htslib and count them as samtools flagstat does."},
    {"count_alignment_parts", count_alignment_parts, METH_VARARGS,
     "count_alignment_parts(library, path, reference, parts, /)\n"
     "-> [(status, records, passed, mapped, duplicates, primary_bases, unmapped_primaries), ...]\n\n"
     "Count the records of a CRAM's parts, each (container offset, records or -1 to the end, "
     "required fields), each on its own thread."},
    {"scan_vcf", scan_vcf, METH_VARARGS,
     "scan_vcf(data, limits, columns, first_record, /) -> (consumed, records, events)\n\n"
     "Hold the whole VCF record lines at the start of data to their header."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_fastq_scan", "FASTQ record scanner for the validator.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastq_scan(void) {
    PyObject *module = PyModule_Create(&module_def);
    if (!module) return NULL;
    BlockType = PyStructSequence_NewType(&block_desc);
    if (!BlockType || PyModule_AddObjectRef(module, "Block", (PyObject *)BlockType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
