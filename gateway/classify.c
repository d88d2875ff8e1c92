/* classify: prompt complexity from cheap signals (see classify.h). */
#include "classify.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

typedef struct counts {
    size_t bytes;
    int    code, math, steps;
} counts;

static int starts_ci(const char *p, size_t left, const char *word)
{
    size_t n = strlen(word);
    if (n > left) return 0;
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)p[i]) != word[i]) return 0;
    return 1;
}

/* Keywords by first letter: only words starting at a word boundary are tried. */
static const char *const code_words[] = {
    "def ", "class ", "#include", "function", "import ", "return ", "select ", "const ", "public ",
    "fn ", "func ", "struct ", "void ", "int main", "console.", "print(", "traceback", "stack trace",
    "compile", "segfault", "regex", "```", NULL
};
static const char *const math_words[] = {
    "\\frac", "\\int", "\\sum", "\\sqrt", "integral", "derivative", "prove", "proof", "theorem",
    "equation", "solve", "matrix", "probability", "lemma", NULL
};
static const char *const step_words[] = {
    "step by step", "step-by-step", "first,", "then ", "finally", "after that", "next,", "plan ",
    "compare", "analyze", "analyse", "explain why", NULL
};

/* Which list's words start with each byte: a word start tries 0-3 candidates, not all 48. */
enum { LIST_CODE = 1, LIST_MATH, LIST_STEPS, PER_CHAR = 8 };
typedef struct cand { const char *word; unsigned char list; } cand;
static cand by_first[256][PER_CHAR];
static int by_first_ready;

static void index_words(void)
{
    const char *const *lists[] = { code_words, math_words, step_words };
    for (int l = 0; l < 3; l++)
        for (const char *const *w = lists[l]; *w; w++) {
            cand *c = by_first[(unsigned char)(*w)[0]];
            for (int k = 0; k < PER_CHAR; k++)
                if (!c[k].word) { c[k].word = *w; c[k].list = (unsigned char)(LIST_CODE + l); break; }
        }
    by_first_ready = 1;
}

/* The list of the keyword at p, or 0. */
static int keyword_at(const char *p, size_t left)
{
    const cand *c = by_first[(unsigned char)tolower((unsigned char)*p)];
    for (int k = 0; k < PER_CHAR && c[k].word; k++)
        if (starts_ci(p, left, c[k].word)) return c[k].list;
    return 0;
}

static void scan(counts *c, const char *s, size_t n)
{
    if (c->bytes >= CLASSIFY_MAX_SCAN) return;
    if (!by_first_ready) index_words();
    if (n > CLASSIFY_MAX_SCAN - c->bytes) n = CLASSIFY_MAX_SCAN - c->bytes;
    c->bytes += n;
    int line_start = 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        int word_start = i == 0 || !isalnum((unsigned char)s[i - 1]);
        if (word_start && (isalpha(ch) || ch == '#' || ch == '\\' || ch == '`')) {
            int l = keyword_at(s + i, n - i);
            if (l == LIST_CODE) c->code++;
            else if (l == LIST_MATH) c->math++;
            else if (l == LIST_STEPS) c->steps++;
        }
        if (ch == ';' && i + 1 < n && s[i + 1] == '\n') c->code++;
        /* 12*34, 3^2, x = 5 + 7: an operator between digits */
        if ((ch == '+' || ch == '*' || ch == '/' || ch == '^' || ch == '=') && i > 0 && i + 1 < n &&
            (isdigit((unsigned char)s[i - 1]) || s[i - 1] == ' ') && (isdigit((unsigned char)s[i + 1]) || s[i + 1] == ' ') &&
            (isdigit((unsigned char)s[i > 1 ? i - 2 : 0]) || isdigit((unsigned char)s[i + 1 < n - 1 ? i + 2 : i + 1])))
            c->math++;
        /* "1." or "2)" at a line start: a numbered instruction */
        if (line_start && isdigit(ch) && i + 1 < n && (s[i + 1] == '.' || s[i + 1] == ')')) c->steps++;
        line_start = ch == '\n' || (line_start && (ch == ' ' || ch == '\t'));
    }
}

static double sat(int hits, double per) { double v = hits / per; return v > 1 ? 1 : v; }

static double combine(const counts *c, int tools, classify_signals *out)
{
    classify_signals s;
    s.length = c->bytes ? log2(1.0 + (double)c->bytes / 200.0) / 5.0 : 0;
    if (s.length > 1) s.length = 1;
    s.code = sat(c->code, 4);
    s.math = sat(c->math, 4);
    s.steps = sat(c->steps, 4);
    s.tools = tools ? 1 : 0;
    if (out) *out = s;
    /* the strongest signal decides, the others add half their weight */
    double w[5] = { 0.5 * s.length, 0.7 * s.code, 0.7 * s.math, 0.6 * s.steps, 0.8 * s.tools };
    double sum = 0, max = 0;
    for (int i = 0; i < 5; i++) { sum += w[i]; if (w[i] > max) max = w[i]; }
    double score = max + 0.5 * (sum - max);
    return score > 1 ? 1 : score;
}

double classify_text(const char *text, size_t len, int tools, classify_signals *out)
{
    counts c = { 0 };
    scan(&c, text ? text : "", text ? len : 0);
    return combine(&c, tools, out);
}

/* A message content: a string, or parts with "text". */
static void scan_content(counts *c, const json_value *v)
{
    if (!v) return;
    if (v->type == JSON_STRING) { scan(c, v->str, v->str_len); return; }
    if (v->type != JSON_ARRAY) return;
    for (const json_value *p = v->first; p; p = p->next) {
        const json_value *t = json_get(p, "text");
        if (t && t->type == JSON_STRING) scan(c, t->str, t->str_len);
    }
}

double classify_request(const json_value *root, classify_signals *out)
{
    counts c = { 0 };
    int tools = 0;
    const json_value *t = json_get(root, "tools");
    if (t && t->type == JSON_ARRAY && t->count > 0) tools = 1;
    scan_content(&c, json_get(root, "system"));   /* Anthropic's */
    const json_value *msgs = json_get(root, "messages");
    if (msgs && msgs->type == JSON_ARRAY) {
        for (const json_value *m = msgs->first; m; m = m->next) {
            const char *role = json_get_str(m, "role");
            if (role && !strcmp(role, "tool")) tools = 1;
            scan_content(&c, json_get(m, "content"));
        }
    }
    const json_value *prompt = json_get(root, "prompt");
    if (prompt && prompt->type == JSON_STRING) scan(&c, prompt->str, prompt->str_len);
    return combine(&c, tools, out);
}
