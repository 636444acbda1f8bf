/* Calls tk kernels from C through the static library `tk build --emit staticlib` makes
 * (see kernels.tk for the commands). Prints each result; exits 1 on an unexpected status. */
#include <stdio.h>
#include "kernels.h"

static void print(const char *name, const float *v, int n) {
    printf("%s:", name);
    for (int i = 0; i < n; i++) printf(" %.9g", v[i]);
    printf("\n");
}

int main(void) {
    float x[2 * 4] = {1, 2, 3, 4, -1, 0, 0.5f, 8};
    float p[2 * 4];
    int s = tk_softmax_rows(x, p, 2, 4);
    if (s != TK_OK) {
        fprintf(stderr, "softmax_rows: status %d\n", s);
        return 1;
    }
    print("softmax_rows", p, 8);

    float a = 2.5f, xs[5] = {0, 1, 2, 3, 4}, ys[5] = {1, -1, 1, -1, 1}, out[5];
    if ((s = tk_saxpy(&a, xs, ys, out, 5)) != TK_OK) {
        fprintf(stderr, "saxpy: status %d\n", s);
        return 1;
    }
    print("saxpy", out, 5);

    float table[3 * 2] = {10, 11, 20, 21, 30, 31}, rows[2 * 2];
    int ids[2] = {2, 0};
    if ((s = tk_embed(table, ids, rows, 3, 2, 2)) != TK_OK) {
        fprintf(stderr, "embed: status %d\n", s);
        return 1;
    }
    print("embed", rows, 4);

    int bad[2] = {1, 7}; /* 7 is not a row of the table */
    s = tk_embed(table, bad, rows, 3, 2, 2);
    printf("embed with index 7: %s\n", s == TK_ERR_INDEX ? "TK_ERR_INDEX" : "unexpected status");
    return s == TK_ERR_INDEX ? 0 : 1;
}
