#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "chat/util.h"

static void test_uuid_new_is_v4_and_valid(void **st)
{
    char a[CHAT_UUID_LEN + 1], b[CHAT_UUID_LEN + 1];
    chat_uuid_new(a);
    chat_uuid_new(b);
    assert_true(chat_uuid_valid(a));
    assert_string_not_equal(a, b);
    assert_int_equal(a[14], '4');
    assert_non_null(strchr("89ab", a[19]));
}

static void test_uuid_valid_rejects(void **st)
{
    assert_true(chat_uuid_valid("0f8fad5b-d9cb-469f-a165-70867728950e"));
    assert_true(chat_uuid_valid("0F8FAD5B-D9CB-469F-A165-70867728950E"));
    assert_false(chat_uuid_valid(NULL));
    assert_false(chat_uuid_valid(""));
    assert_false(chat_uuid_valid("0f8fad5b-d9cb-469f-a165-70867728950"));
    assert_false(chat_uuid_valid("0f8fad5b-d9cb-469f-a165-70867728950e0"));
    assert_false(chat_uuid_valid("0f8fad5bXd9cb-469f-a165-70867728950e"));
    assert_false(chat_uuid_valid("0f8fad5b-d9cb-469f-a165-70867728950g"));
}

struct collected {
    int n;
    char items[4][32];
};

static int collect(const char *item, void *arg)
{
    struct collected *c = arg;
    strncpy(c->items[c->n++], item, 31);
    return 0;
}

static void test_split_list(void **st)
{
    struct collected c = {0};
    assert_int_equal(chat_split_list(" a , bb,,c ", collect, &c), 0);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.items[0], "a");
    assert_string_equal(c.items[1], "bb");
    assert_string_equal(c.items[2], "c");
    struct collected d = {0};
    assert_int_equal(chat_split_list("", collect, &d), 0);
    assert_int_equal(d.n, 0);
}

static void test_clocks(void **st)
{
    int64_t now = chat_now_ms();
    assert_true(now > 1700000000000LL);
    int64_t m1 = chat_mono_ms(), m2 = chat_mono_ms();
    assert_true(m2 >= m1);
}

static void test_deadline_ms(void **st)
{
    (void)st;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct timespec d = chat_deadline_ms(1999);
    int64_t diff = (d.tv_sec - now.tv_sec) * 1000 + (d.tv_nsec - now.tv_nsec) / 1000000;
    assert_true(diff >= 1999 && diff < 2100);
    assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deadline_ms),
        cmocka_unit_test(test_uuid_new_is_v4_and_valid),
        cmocka_unit_test(test_uuid_valid_rejects),
        cmocka_unit_test(test_split_list),
        cmocka_unit_test(test_clocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
