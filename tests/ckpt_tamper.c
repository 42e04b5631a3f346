/* Damages a furrow checkpoint behind the writer's back, for the integrity tests:
 *   ckpt_tamper flip FILE DATASET          one byte of the dataset's first chunk
 *   ckpt_tamper config DIR FROM TO         config_json with FROM replaced by TO
 *   ckpt_tamper relink DIR NAME TARGET     tensor NAME's link points at TARGET's data */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int die(const char *msg) {
    fprintf(stderr, "ckpt_tamper: %s\n", msg);
    return 1;
}

static void to_path(const char *name, char *path, size_t size) {
    snprintf(path, size, "/%s", name);
    for (char *p = path; *p; p++)
        if (*p == '.') *p = '/';
}

static int flip(const char *file, const char *dset) {
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = f >= 0 ? H5Dopen2(f, dset, H5P_DEFAULT) : -1;
    if (d < 0) return die("cannot open the dataset");
    hsize_t off[8], size = 0;
    unsigned mask;
    haddr_t addr = HADDR_UNDEF;
    hid_t space = H5Dget_space(d);
    herr_t h = H5Dget_chunk_info(d, space, 0, off, &mask, &addr, &size);
    H5Sclose(space), H5Dclose(d), H5Fclose(f);
    if (h < 0 || size < 8) return die("no chunk to damage");
    FILE *fp = fopen(file, "r+b");
    if (!fp) return die("cannot write the file");
    fseek(fp, (long)(addr + size / 2), SEEK_SET);
    int ch = fgetc(fp);
    fseek(fp, (long)(addr + size / 2), SEEK_SET);
    fputc(ch ^ 0x10, fp);
    return fclose(fp) ? die("write failed") : 0;
}

static int config(const char *root, const char *from, const char *to) {
    hid_t f = H5Fopen(root, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = f >= 0 ? H5Aopen(f, "config_json", H5P_DEFAULT) : -1;
    if (a < 0) return die("no config_json");
    hid_t t = H5Aget_type(a);
    size_t n = H5Tget_size(t);
    char *old = calloc(1, n + 1), *neu = calloc(1, n + strlen(to) + 1);
    H5Aread(a, t, old);
    H5Tclose(t), H5Aclose(a);
    char *at = strstr(old, from);
    if (!at) return die("FROM is not in config_json");
    snprintf(neu, n + strlen(to) + 1, "%.*s%s%s", (int)(at - old), old, to, at + strlen(from));
    H5Adelete(f, "config_json");
    t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(neu) + 1);
    hid_t s = H5Screate(H5S_SCALAR);
    a = H5Acreate2(f, "config_json", t, s, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, t, neu) < 0;
    H5Aclose(a), H5Sclose(s), H5Tclose(t), H5Fclose(f);
    free(old), free(neu);
    return rc ? die("cannot rewrite config_json") : 0;
}

static int relink(const char *root, const char *name, const char *target) {
    char p[512], q[512];
    to_path(name, p, sizeof p);
    to_path(target, q, sizeof q);
    hid_t f = H5Fopen(root, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return die("cannot open the root");
    char buf[1024];
    const char *file, *obj;
    unsigned flags;
    H5L_info_t li;
    if (H5Lget_info(f, q, &li, H5P_DEFAULT) < 0 || li.u.val_size > sizeof buf ||
        H5Lget_val(f, q, buf, sizeof buf, H5P_DEFAULT) < 0 ||
        H5Lunpack_elink_val(buf, li.u.val_size, &flags, &file, &obj) < 0)
        return die("TARGET is not an external link");
    int rc = H5Ldelete(f, p, H5P_DEFAULT) < 0 || H5Lcreate_external(file, obj, f, p, H5P_DEFAULT, H5P_DEFAULT) < 0;
    H5Fclose(f);
    return rc ? die("cannot relink") : 0;
}

int main(int argc, char **argv) {
    char root[4096];
    if (argc == 4 && !strcmp(argv[1], "flip")) return flip(argv[2], argv[3]);
    if (argc == 5) snprintf(root, sizeof root, "%s/furrow.h5", argv[2]);
    if (argc == 5 && !strcmp(argv[1], "config")) return config(root, argv[3], argv[4]);
    if (argc == 5 && !strcmp(argv[1], "relink")) return relink(root, argv[3], argv[4]);
    return die("usage: ckpt_tamper flip FILE DATASET | config DIR FROM TO | relink DIR NAME TARGET");
}
