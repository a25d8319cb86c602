/* Writes the seeds of corpus/proto: for every type of proto_types.h an
 * empty message, one with every field set (repeated fields twice, nested
 * messages three levels deep) and one per further member of each oneof,
 * each prefixed with the type's index as fuzz_proto.c reads it; and
 * batches of two full items of the types the services exchange. Values
 * come from the descriptors, so a new message or field needs no change
 * here. Usage: fuzz_proto_seeds DIR (README.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_types.h"

#define SEED_DEPTH 3
#define SEED_UUID "0f8c2a4e-9b1d-4c3a-8e7f-123456789abc"

static size_t seed_elem_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE: return 8;
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
    default: return 4;
    }
}

static ProtobufCMessage *seed_new(const ProtobufCMessageDescriptor *d, int depth, int pick);

/* A string the services would see there: a user id where the field is
 * one, else a short id or text. */
static char *seed_string(const ProtobufCFieldDescriptor *f)
{
    if (strstr(f->name, "user_id") != NULL || strcmp(f->name, "members") == 0)
        return strdup(SEED_UUID);
    return strdup(strstr(f->name, "id") != NULL ? "c-1234" : "hello, world");
}

/* Sets one element of field f at p; false when it cannot (too deep). */
static int seed_value(const ProtobufCFieldDescriptor *f, void *p, int depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: *(int32_t *)p = -7; break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: *(uint32_t *)p = 42; break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: *(int64_t *)p = 1700000000123; break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: *(uint64_t *)p = 123456789; break;
    case PROTOBUF_C_TYPE_FLOAT: *(float *)p = 1.5f; break;
    case PROTOBUF_C_TYPE_DOUBLE: *(double *)p = 2.5; break;
    case PROTOBUF_C_TYPE_BOOL: *(protobuf_c_boolean *)p = 1; break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *e = f->descriptor;
        *(int *)p = e->values[e->n_values - 1].value;
        break;
    }
    case PROTOBUF_C_TYPE_STRING: *(char **)p = seed_string(f); break;
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *b = p;
        b->data = (uint8_t *)strdup("\x01\x02\x03");
        b->len = 3;
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        if (depth >= SEED_DEPTH)
            return 0;
        *(ProtobufCMessage **)p = seed_new(f->descriptor, depth + 1, 0);
        break;
    }
    return 1;
}

/* A message of type d with every field set; of each oneof the member
 * number pick (or the first, when it has fewer). */
static ProtobufCMessage *seed_new(const ProtobufCMessageDescriptor *d, int depth, int pick)
{
    ProtobufCMessage *m = calloc(1, d->sizeof_message);
    protobuf_c_message_init(d, m);
    char *base = (char *)m;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            unsigned first = i, member = 0;
            while (first > 0 && (d->fields[first - 1].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                   d->fields[first - 1].quantifier_offset == f->quantifier_offset)
                first--;
            member = i - first;
            unsigned n = 0;
            while (first + n < d->n_fields &&
                   (d->fields[first + n].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                   d->fields[first + n].quantifier_offset == f->quantifier_offset)
                n++;
            if (member != ((unsigned)pick < n ? (unsigned)pick : 0))
                continue;
            if (seed_value(f, base + f->offset, depth))
                *(uint32_t *)(base + f->quantifier_offset) = f->id;
        } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t sz = seed_elem_size(f);
            char *arr = calloc(2, sz);
            size_t n = 0;
            while (n < 2 && seed_value(f, arr + n * sz, depth))
                n++;
            *(void **)(base + f->offset) = arr;
            *(size_t *)(base + f->quantifier_offset) = n;
        } else {
            seed_value(f, base + f->offset, depth);
            if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset != 0)
                *(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
        }
    }
    return m;
}

/* The largest number of members of one oneof of d. */
static unsigned seed_max_oneof(const ProtobufCMessageDescriptor *d)
{
    unsigned max = 0, run = 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
            run = 0;
        else if (run > 0 && d->fields[i - 1].quantifier_offset == f->quantifier_offset)
            run++;
        else
            run = 1;
        if (run > max)
            max = run;
    }
    return max;
}

static int seed_write(const char *dir, const char *name, const uint8_t *prefix, size_t np,
                      const ProtobufCMessage *m)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n + 1);
    protobuf_c_message_pack(m, buf);
    FILE *fp = fopen(path, "wb");
    int ok = fp != NULL && fwrite(prefix, 1, np, fp) == np && fwrite(buf, 1, n, fp) == n;
    if (fp != NULL && fclose(fp) != 0)
        ok = 0;
    free(buf);
    if (!ok)
        fprintf(stderr, "fuzz_proto_seeds: cannot write %s\n", path);
    return ok ? 0 : -1;
}

/* Two full items of type index t in one Batch. */
static int seed_batch(const char *dir, uint8_t t)
{
    const ProtobufCMessageDescriptor *d = proto_types[t];
    ProtobufCMessage *item = seed_new(d, 0, 0);
    size_t n = protobuf_c_message_get_packed_size(item);
    uint8_t *buf = malloc(n + 1);
    protobuf_c_message_pack(item, buf);
    ProtobufCBinaryData items[2] = {{n, buf}, {n, buf}};
    Chat__Batch b = CHAT__BATCH__INIT;
    b.n_items = 2;
    b.items = items;
    b.publisher = 0x1234abcd;
    b.pub_seq = 7;
    uint8_t prefix[2] = {(uint8_t)PROTO_N_TYPES, t};
    char name[128];
    snprintf(name, sizeof name, "batch-%s", d->short_name);
    int rv = seed_write(dir, name, prefix, 2, &b.base);
    free(buf);
    protobuf_c_message_free_unpacked(item, NULL);
    return rv;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    int rv = 0;
    for (size_t t = 0; t < PROTO_N_TYPES; t++) {
        const ProtobufCMessageDescriptor *d = proto_types[t];
        uint8_t prefix = (uint8_t)t;
        char name[128];
        ProtobufCMessage *m = calloc(1, d->sizeof_message);
        protobuf_c_message_init(d, m);
        snprintf(name, sizeof name, "%02zu-%s-empty", t, d->short_name);
        rv |= seed_write(argv[1], name, &prefix, 1, m);
        protobuf_c_message_free_unpacked(m, NULL);
        unsigned picks = seed_max_oneof(d);
        for (unsigned p = 0; p < (picks > 0 ? picks : 1); p++) {
            m = seed_new(d, 0, (int)p);
            snprintf(name, sizeof name, "%02zu-%s-full%u", t, d->short_name, p);
            rv |= seed_write(argv[1], name, &prefix, 1, m);
            protobuf_c_message_free_unpacked(m, NULL);
        }
    }
    /* What travels in batches: requests, replies, events. */
    for (size_t t = 0; t < PROTO_N_TYPES; t++) {
        const char *s = proto_types[t]->short_name;
        size_t n = strlen(s);
        if ((n > 7 && strcmp(s + n - 7, "Request") == 0) ||
            (n > 5 && strcmp(s + n - 5, "Reply") == 0) || strcmp(s, "Event") == 0)
            rv |= seed_batch(argv[1], (uint8_t)t);
    }
    return rv != 0 ? 1 : 0;
}
