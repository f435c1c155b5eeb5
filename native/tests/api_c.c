/* The public header compiled as C99: a tiny program that uses it end to end. */
#include <kiln/kiln.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    float* a = NULL;
    int64_t shape[1] = {4}, unit[1] = {1};
    double s = 0.0;
    kiln_memory_stats st;
    int i;
    if (kiln_alloc(4 * (int64_t)sizeof(float), (void**)&a) != KILN_OK) return 1;
    for (i = 0; i < 4; ++i) a[i] = (float)(i + 1);
    if (kiln_binary_f32(KILN_BINARY_ADD, 1, shape, a, unit, a, unit, a, unit) != KILN_OK) return 2;
    if (kiln_sum_f32(1, shape, a, unit, &s) != KILN_OK || s != 20.0) return 3;
    if (kiln_alloc(-1, NULL) == KILN_OK || strlen(kiln_last_error()) == 0) return 4;
    if (kiln_free(a) != KILN_OK) return 5;
    if (kiln_memory_stats_get(&st) != KILN_OK || st.bytes_in_use != 0) return 6;
    printf("kiln %s: C API ok\n", kiln_version());
    return 0;
}
