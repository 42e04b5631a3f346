/* The byte automaton of runtime/engine/json_grammar.h: one frame per value
 * being written, the top one taking each byte. A scalar whose end is only seen
 * at the next byte (a number, an enum value that is a prefix of another) ends
 * there and hands that byte to its parent. */
#include <string.h>

#include "runtime/engine/json_grammar.h"

enum { R_START, R_DONE };
enum { O_START, O_KEY, O_COLON, O_VALUE, O_AFTER, O_NEXTKEY };
enum { A_START, A_AFTER, A_NEXT };
enum { S_OPEN, S_CHAR, S_ESC, S_HEX, S_UTF8 };
enum { N_START, N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };

/* The generic nodes' indices (runtime/engine/json_schema.c). */
enum { G_ANY, G_OBJECT, G_ARRAY, G_STRING, G_NUMBER, G_BOOL, G_NULL };

static bool has_bit(const uint8_t *set, uint8_t c) { return set[c >> 3] >> (c & 7) & 1; }
static bool is_ws(uint8_t c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
static bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

void fw_json_start(const fw_json_nodes *g, fw_json_state *s) {
    memset(s, 0, sizeof *s);
    s->depth = 1;
    s->f[0].node = (uint16_t)g->root;
}

bool fw_json_complete(const fw_json_state *s) { return s->depth == 1 && s->f[0].st == R_DONE; }

static bool space(fw_json_state *s) { return s->ws < FW_JSON_MAX_WS ? (s->ws++, true) : false; }

static bool push(fw_json_state *s, int node, uint8_t st) {
    if (s->depth >= FW_JSON_MAX_DEPTH) return false;
    fw_json_frame *f = &s->f[s->depth++];
    memset(f, 0, sizeof *f);
    f->node = (uint16_t)node, f->st = st;
    return true;
}

/* The top frame's value is complete: the parent moves past it. */
static void done(const fw_json_nodes *g, fw_json_state *s) {
    fw_json_frame *p = &s->f[--s->depth - 1];
    switch (g->v[p->node].kind) {
    case FW_JN_ROOT: p->st = R_DONE; break;
    case FW_JN_ARRAY:
        p->st = A_AFTER;
        if (p->a < UINT32_MAX) p->a++;
        break;
    default: p->st = p->st == O_KEY ? O_COLON : O_AFTER; break; /* an object: its key (any object) or a value */
    }
}

/* Properties that may come next from index a: up to the first required one. */
static uint64_t candidates(const fw_json_node *n, uint32_t a) {
    uint64_t set = 0;
    for (int i = (int)a; i < n->n; i++) {
        set |= 1ull << i;
        if (n->required[i]) break;
    }
    return set;
}

static bool required_left(const fw_json_node *n, uint32_t a) {
    for (int i = (int)a; i < n->n; i++)
        if (n->required[i]) return true;
    return false;
}

static bool step(const fw_json_nodes *g, fw_json_state *s, uint8_t c);

/* A value of `node` starts with byte c. */
static bool value(const fw_json_nodes *g, fw_json_state *s, int node, uint8_t c) {
    if (!has_bit(g->v[node].first, c)) return false;
    while (g->v[node].kind == FW_JN_ANY || g->v[node].kind == FW_JN_UNION) {
        const fw_json_node *n = &g->v[node];
        if (n->kind == FW_JN_ANY) {
            node = c == '{' ? G_OBJECT : c == '[' ? G_ARRAY : c == '"' ? G_STRING : c == 't' || c == 'f' ? G_BOOL
                   : c == 'n' ? G_NULL : G_NUMBER;
        } else {
            for (int k = 0; k < n->n; k++)
                if (has_bit(g->v[n->child[k]].first, c)) {
                    node = n->child[k];
                    break;
                }
        }
    }
    const fw_json_node *n = &g->v[node];
    bool container = n->kind == FW_JN_OBJECT || n->kind == FW_JN_OBJECT_ANY || n->kind == FW_JN_ARRAY;
    if (s->depth + (container ? 2 : 1) > FW_JSON_MAX_DEPTH) return false; /* a container needs room for a scalar */
    push(s, node, 0);
    if (container) return true; /* its bracket, the only byte it starts with, is taken */
    if (n->kind == FW_JN_ENUM) s->f[s->depth - 1].set = n->n == 64 ? ~0ull : (1ull << n->n) - 1;
    return step(g, s, c);
}

static bool object(const fw_json_nodes *g, fw_json_state *s, fw_json_frame *f, const fw_json_node *n, uint8_t c) {
    bool any = n->kind == FW_JN_OBJECT_ANY;
    switch (f->st) {
    case O_START:
    case O_AFTER:
    case O_NEXTKEY:
        if (is_ws(c)) return space(s);
        if (c == '"' && f->st != O_AFTER) {
            f->st = O_KEY;
            if (any) return push(s, G_STRING, S_CHAR);
            if (!(f->set = candidates(n, f->a))) return false;
            f->u = 0;
            return true;
        }
        if (c == ',' && f->st == O_AFTER && (any || candidates(n, f->a))) return f->st = O_NEXTKEY, true;
        if (c == '}' && f->st != O_NEXTKEY && (any || !required_left(n, f->a))) return done(g, s), true;
        return false;
    case O_KEY: { /* the name matched against the candidates, byte by byte */
        uint64_t keep = 0;
        for (int i = 0; i < n->n; i++)
            if (f->set >> i & 1 && f->u < n->len[i] && (uint8_t)n->text[i][f->u] == c) keep |= 1ull << i;
        if (keep) {
            if (f->u == UINT8_MAX) return false;
            f->set = keep, f->u++;
            return true;
        }
        if (c != '"') return false;
        for (int i = 0; i < n->n; i++)
            if (f->set >> i & 1 && n->len[i] == f->u) {
                f->a = (uint32_t)i + 1, f->st = O_COLON, f->set = 0, f->u = 0;
                return true;
            }
        return false;
    }
    case O_COLON:
        if (is_ws(c)) return space(s);
        return c == ':' ? (f->st = O_VALUE, true) : false;
    case O_VALUE:
        if (is_ws(c)) return space(s);
        return value(g, s, any ? G_ANY : n->child[f->a - 1], c);
    }
    return false;
}

static bool array(const fw_json_nodes *g, fw_json_state *s, fw_json_frame *f, const fw_json_node *n, uint8_t c) {
    if (is_ws(c)) return space(s);
    switch (f->st) {
    case A_START:
        if (c == ']' && n->min == 0) return done(g, s), true;
        return n->max != 0 && value(g, s, n->child[0], c);
    case A_AFTER:
        if (c == ',' && (n->max < 0 || f->a < n->max)) return f->st = A_NEXT, true;
        if (c == ']' && f->a >= n->min) return done(g, s), true;
        return false;
    case A_NEXT: return value(g, s, n->child[0], c);
    }
    return false;
}

/* UTF-8 is checked as it comes: the range of the next continuation byte
 * (u's bits 2-4: 0 80-BF, 1 A0-BF, 2 80-9F, 3 90-BF, 4 80-8F) and how many remain (bits 0-1). */
static const uint8_t cont_lo[5] = {0x80, 0xA0, 0x80, 0x90, 0x80}, cont_hi[5] = {0xBF, 0xBF, 0x9F, 0xBF, 0x8F};

static bool string(const fw_json_nodes *g, fw_json_state *s, fw_json_frame *f, const fw_json_node *n, uint8_t c) {
    bool counted = n->min > 0 || n->max >= 0;
    switch (f->st) {
    case S_OPEN: return c == '"' ? (f->st = S_CHAR, true) : false;
    case S_CHAR:
        if (c == '"') return f->a >= n->min ? (done(g, s), true) : false;
        if (c < 0x20) return false;
        if (n->max >= 0 && f->a >= n->max) return false;
        if (counted) f->a++;
        if (c == '\\') return f->st = S_ESC, true;
        if (c < 0x80) return true;
        if (c >= 0xC2 && c <= 0xDF) f->u = 1;
        else if (c == 0xE0) f->u = 2 | 1 << 2;
        else if (c == 0xED) f->u = 2 | 2 << 2;
        else if (c >= 0xE1 && c <= 0xEF) f->u = 2;
        else if (c == 0xF0) f->u = 3 | 3 << 2;
        else if (c >= 0xF1 && c <= 0xF3) f->u = 3;
        else if (c == 0xF4) f->u = 3 | 4 << 2;
        else return false;
        f->st = S_UTF8;
        return true;
    case S_UTF8: {
        int r = f->u >> 2, left = f->u & 3;
        if (c < cont_lo[r] || c > cont_hi[r]) return false;
        f->u = (uint8_t)(left - 1);
        if (left == 1) f->st = S_CHAR;
        return true;
    }
    case S_ESC:
        if (c == 'u') return f->st = S_HEX, f->u = 0, true;
        return strchr("\"\\/bfnrt", c) && c ? (f->st = S_CHAR, true) : false;
    case S_HEX: { /* u: digits read (bits 0-2), the first was d (bit 3): no surrogate halves */
        bool hex = is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        int k = f->u & 7;
        if (!hex || (k == 1 && f->u & 8 && !(c >= '0' && c <= '7'))) return false;
        if (k == 0 && (c == 'd' || c == 'D')) f->u |= 8;
        f->u = (uint8_t)((f->u & 8) | (k + 1));
        if (k == 3) f->st = S_CHAR, f->u = 0;
        return true;
    }
    }
    return false;
}

/* Returns 1 taken, 0 refused, -1 the number ended before c (c goes to the parent). */
static int number(fw_json_frame *f, bool integer, uint8_t c) {
    bool d = is_digit(c), e = !integer && (c == 'e' || c == 'E');
    switch (f->st) {
    case N_START:
        if (c == '-') return f->st = N_MINUS, 1;
        /* fall through */
    case N_MINUS:
        if (c == '0') return f->st = N_ZERO, 1;
        return d ? (f->st = N_INT, f->a = 1, 1) : 0;
    case N_ZERO:
    case N_INT:
        if (d && f->st == N_INT && f->a < FW_JSON_MAX_INT_DIGITS) return f->a++, 1;
        if (c == '.' && !integer) return f->st = N_DOT, f->a = 0, 1;
        if (e) return f->st = N_E, f->a = 0, 1;
        return -1;
    case N_DOT: return d ? (f->st = N_FRAC, f->a = 1, 1) : 0;
    case N_FRAC:
        if (d && f->a < FW_JSON_MAX_FRAC_DIGITS) return f->a++, 1;
        if (e) return f->st = N_E, f->a = 0, 1;
        return -1;
    case N_E:
        if (c == '+' || c == '-') return f->st = N_ESIGN, 1;
        /* fall through */
    case N_ESIGN: return d ? (f->st = N_EXP, f->a = 1, 1) : 0;
    case N_EXP: return d && f->a < FW_JSON_MAX_EXP_DIGITS ? (f->a++, 1) : -1;
    }
    return 0;
}

/* Returns 1 taken, 0 refused, -1 a value ended before c. */
static int enumeration(fw_json_frame *f, const fw_json_node *n, uint8_t c) {
    uint64_t keep = 0, whole = 0;
    for (int i = 0; i < n->n; i++) {
        if (!(f->set >> i & 1)) continue;
        if (f->a < n->len[i] && (uint8_t)n->text[i][f->a] == c) keep |= 1ull << i;
        if (n->len[i] == f->a) whole = 1;
    }
    if (!keep) return whole ? -1 : 0;
    f->set = keep, f->a++;
    return 1;
}

/* After an enum byte: the value is complete when no longer candidate is left. */
static bool enum_whole(const fw_json_frame *f, const fw_json_node *n) {
    for (int i = 0; i < n->n; i++)
        if (f->set >> i & 1 && n->len[i] != f->a) return false;
    return true;
}

static bool step(const fw_json_nodes *g, fw_json_state *s, uint8_t c) {
    for (;;) {
        fw_json_frame *f = &s->f[s->depth - 1];
        const fw_json_node *n = &g->v[f->node];
        int r;
        switch (n->kind) {
        case FW_JN_ROOT:
            if (f->st == R_DONE) return false;
            if (is_ws(c)) return space(s);
            return value(g, s, n->child[0], c);
        case FW_JN_OBJECT:
        case FW_JN_OBJECT_ANY: return object(g, s, f, n, c);
        case FW_JN_ARRAY: return array(g, s, f, n, c);
        case FW_JN_STRING: return string(g, s, f, n, c);
        case FW_JN_NUMBER:
        case FW_JN_INTEGER:
            if ((r = number(f, n->kind == FW_JN_INTEGER, c)) >= 0) return r;
            done(g, s);
            continue;
        case FW_JN_ENUM:
            if ((r = enumeration(f, n, c)) > 0) {
                if (enum_whole(f, n)) done(g, s);
                return true;
            }
            if (r == 0) return false;
            done(g, s);
            continue;
        default: return false;
        }
    }
}

bool fw_json_can_end(const fw_json_nodes *g, const fw_json_state *s) {
    if (fw_json_complete(s)) return true;
    if (s->depth != 2) return false;
    fw_json_frame f = s->f[1];
    const fw_json_node *n = &g->v[f.node];
    if (n->kind == FW_JN_NUMBER || n->kind == FW_JN_INTEGER) return number(&f, n->kind == FW_JN_INTEGER, ' ') < 0;
    if (n->kind == FW_JN_ENUM) return enumeration(&f, n, ' ') < 0;
    return false;
}

bool fw_json_feed(const fw_json_nodes *g, fw_json_state *s, const uint8_t *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!is_ws(b[i])) s->ws = 0;
        if (!step(g, s, b[i])) return false;
    }
    return true;
}

/* A count's distances to its bounds, each capped past what one token can move it. */
static uint32_t clamp_count(uint32_t a, int64_t min, int64_t max, uint32_t longest) {
    int64_t cap = (int64_t)longest + 1;
    int64_t lo = a < min ? min - a : 0, hi = max >= 0 ? max - a : cap;
    if (lo > cap) lo = cap;
    if (hi > cap) hi = cap;
    return (uint32_t)lo | (uint32_t)hi << 16;
}

size_t fw_json_key(const fw_json_nodes *g, const fw_json_state *s, uint32_t longest, uint8_t *key) {
    key[0] = s->depth, key[1] = s->ws;
    size_t k = 2;
    for (int d = 0; d < s->depth; d++) {
        fw_json_frame f = s->f[d];
        const fw_json_node *n = &g->v[f.node];
        if (n->kind == FW_JN_ARRAY || (n->kind == FW_JN_STRING && (n->min > 0 || n->max >= 0)))
            f.a = clamp_count(f.a, n->min, n->max, longest);
        memcpy(key + k, &f, sizeof f);
        k += sizeof f;
    }
    return k;
}
