/* The log-linear histogram and the result's merge/JSON round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static void test_slots(void **state)
{
    /* Every value lies in its slot's range, slots are monotonic, and the
     * relative error of a slot is at most 1/64. */
    int prev = -1;
    for (uint64_t v = 0; v < 5000000; v += v < 1000 ? 1 : v / 97) {
        int s = cb_hist_slot(v);
        assert_true(s >= prev);
        assert_true(s < CB_HIST_SLOTS);
        uint64_t hi = cb_hist_slot_high(s);
        assert_true(hi >= v);
        assert_true((double)(hi - v) <= (double)v / 64.0 + 1);
        prev = s;
    }
    assert_int_equal(cb_hist_slot(127), 127);
    assert_int_equal(cb_hist_slot(128), 128);
    assert_int_equal(cb_hist_slot(UINT32_MAX), CB_HIST_SLOTS - 1);
    assert_int_equal(cb_hist_slot(UINT64_MAX), CB_HIST_SLOTS - 1);
}

static void test_percentiles(void **state)
{
    cb_hist *h = calloc(1, sizeof *h);
    assert_int_equal(cb_hist_pct(h, 50), 0);
    for (int v = 1; v <= 10000; v++)
        cb_hist_add(h, v);
    assert_int_equal(h->count, 10000);
    assert_int_equal(h->min_us, 1);
    assert_int_equal(h->max_us, 10000);
    uint64_t p50 = cb_hist_pct(h, 50), p99 = cb_hist_pct(h, 99);
    assert_true(p50 >= 5000 && p50 <= 5000 + 5000 / 64 + 1);
    assert_true(p99 >= 9900 && p99 <= 10000);
    assert_int_equal(cb_hist_pct(h, 100), 10000);
    cb_hist_add(h, -5); /* clamps to 0 */
    assert_int_equal(h->min_us, 0);
    free(h);
}

static void test_merge_json(void **state)
{
    cb_result *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b), *m = calloc(1, sizeof *m);
    a->c[CB_C_SENT] = 10;
    a->c[CB_C_LOST] = 1;
    a->m[CB_M_LAST_ACK_NS] = 5;
    cb_hist_add(&a->h[CB_H_ACK], 100);
    cb_hist_add(&a->h[CB_H_ACK], 3000);
    cb_result_error(a, "unavailable", 2);
    b->c[CB_C_SENT] = 5;
    b->m[CB_M_LAST_ACK_NS] = 9;
    cb_hist_add(&b->h[CB_H_ACK], 50);
    cb_result_error(b, "unavailable", 1);
    cb_result_error(b, "rate_limited", 4);

    cJSON *ja = cb_result_to_json(a), *jb = cb_result_to_json(b);
    char *ta = cJSON_PrintUnformatted(ja), *tb = cJSON_PrintUnformatted(jb);
    assert_int_equal(cb_result_from_json(m, ta), 0);
    assert_int_equal(cb_result_from_json(m, tb), 0);
    assert_int_equal(m->c[CB_C_SENT], 15);
    assert_int_equal(m->c[CB_C_LOST], 1);
    assert_int_equal(m->m[CB_M_LAST_ACK_NS], 9);
    assert_int_equal(m->h[CB_H_ACK].count, 3);
    assert_int_equal(m->h[CB_H_ACK].min_us, 50);
    assert_int_equal(m->h[CB_H_ACK].max_us, 3000);
    assert_int_equal(m->n_err, 2);
    assert_string_equal(m->err[0].code, "unavailable");
    assert_int_equal(m->err[0].n, 3);
    assert_int_equal(m->err[1].n, 4);
    assert_int_equal(cb_result_from_json(m, "{\"c\":{}}"), -1);
    assert_int_equal(cb_result_from_json(m, "not json"), -1);
    free(ta);
    free(tb);
    cJSON_Delete(ja);
    cJSON_Delete(jb);

    /* Codes beyond the table's size end up in one "(other)" slot. */
    cb_result *r = calloc(1, sizeof *r);
    char code[16];
    for (int i = 0; i < 40; i++) {
        snprintf(code, sizeof code, "c%d", i);
        cb_result_error(r, code, 1);
    }
    assert_int_equal(r->n_err, CB_MAX_CODES);
    assert_string_equal(r->err[CB_MAX_CODES - 1].code, "(other)");
    assert_int_equal(r->err[CB_MAX_CODES - 1].n, 40 - (CB_MAX_CODES - 1));
    free(r);
    free(a);
    free(b);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slots),
        cmocka_unit_test(test_percentiles),
        cmocka_unit_test(test_merge_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
