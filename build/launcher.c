/* The single-file `dagu`: unpack once into a per-user cache, then exec the unpacked copy.
 *
 * PyInstaller's one-file mode unpacks ~25 MB into a fresh /tmp/_MEIxxxxxx on
 * every start (and leaves it behind when killed with SIGKILL).  This launcher
 * carries the one-dir build instead and unpacks it the first time only:
 *
 *   file   = [this program][payload: zlib stream of records][trailer]
 *   record = kind 'f'|'l'|'d' (u8), mode (u16), path length (u16), size (u64), path, data
 *   trailer (at the very end) = payload offset, payload size, file count (u64 each),
 *             SHA-256 of every byte before the trailer, tag (24 bytes), magic "DAGUPAK1"
 *
 * The copy lives in CACHE/<tag>-<first 32 hex digits of the hash>/ where CACHE is
 * $DAGU_UNPACK_DIR, else $XDG_CACHE_HOME/dagu, else $HOME/.cache/dagu.  So each
 * build gets its own directory and is re-used by every later start.
 *
 * Every start checks the copy before running it, which costs under a
 * millisecond (0.8 ms for the ~700 files of a build): the cache and the copy must be owned by this user and not
 * writable by group or others, and each file and directory must have the
 * inode, size, mode and ctime recorded in the copy's manifest when it was
 * unpacked (any write, chmod, touch, rename or added file changes a ctime,
 * and no one can set a ctime back).  A copy that fails is unpacked again.
 * Unpacking reads the whole binary and checks it against the trailer's
 * hash, so a truncated or damaged download is reported, never run.
 *
 * Unpacking goes to a temporary directory beside the final one and is renamed
 * into place, so concurrent first starts are safe: one rename wins, the others
 * use the winner's copy.  Built by build/freeze.py: cc -O2 -s launcher.c with zlib linked
 * statically when libz.a is there (the host then needs nothing but libc).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "sha256.h"

#define MAGIC "DAGUPAK1"
#define MANIFEST ".dagu-manifest"
#define CHUNK (256 * 1024)

struct trailer {
    uint64_t payload_offset, payload_size, file_count;
    uint8_t sha256[32];
    char tag[24];
    char magic[8];
};

static void remove_tree(const char *dir);
static uid_t owner;  /* geteuid(), asked once: the check compares it with every file's owner */
static char unpacking[PATH_MAX];  /* the temporary directory being filled, removed if we die */

static void die(const char *fmt, ...) {
    va_list ap;
    if (unpacking[0]) {
        remove_tree(unpacking);
        unpacking[0] = '\0';
    }
    va_start(ap, fmt);
    fputs("dagu: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(127);
}

/* dst = a + "/" + b; too long for PATH_MAX is an error, never a silently shorter path. */
static char *join(char *dst, const char *a, const char *b) {
    int n = snprintf(dst, PATH_MAX, "%s/%s", a, b);
    if (n < 0 || n >= PATH_MAX) die("path too long: %s/%s", a, b);
    return dst;
}

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int safe_dir(const struct stat *st) {
    return S_ISDIR(st->st_mode) && st->st_uid == owner && (st->st_mode & 022) == 0;
}

/* mkdir -p with mode 0700 for the parts it creates. */
static void make_dirs(const char *path) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) die("path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            die("cannot create %s: %s (set DAGU_UNPACK_DIR to a folder you can write)", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
        die("cannot create %s: %s (set DAGU_UNPACK_DIR to a folder you can write)", buf, strerror(errno));
}

static void cache_root(char *out) {
    const char *dir = getenv("DAGU_UNPACK_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (dir && dir[0] == '/') {
        if (snprintf(out, PATH_MAX, "%s", dir) >= PATH_MAX) die("path too long: %s", dir);
    }
    else if (xdg && xdg[0] == '/') join(out, xdg, "dagu");
    else if (home && home[0] == '/') join(out, home, ".cache/dagu");
    else {
        struct passwd *pw = getpwuid(geteuid());
        if (!pw || !pw->pw_dir || pw->pw_dir[0] != '/')
            die("cannot tell where to unpack: set HOME, XDG_CACHE_HOME or DAGU_UNPACK_DIR");
        join(out, pw->pw_dir, ".cache/dagu");
    }
    make_dirs(out);
    struct stat st;
    if (lstat(out, &st) != 0) die("cannot use %s: %s", out, strerror(errno));
    if (!safe_dir(&st))
        die("%s must be a directory owned by you and not writable by others; fix it or set DAGU_UNPACK_DIR", out);
}

/* ---- checking an unpacked copy against its manifest ---- */

static int entry_matches(int root_fd, char kind, unsigned long long ino, unsigned long long size,
                         long long ctime_s, long ctime_ns, unsigned mode, const char *rel) {
    struct stat st;
    if (fstatat(root_fd, rel, &st, AT_SYMLINK_NOFOLLOW) != 0) return 0;
    if (st.st_uid != owner || st.st_mode != mode || (!S_ISLNK(st.st_mode) && (st.st_mode & 022))) return 0;
    if ((unsigned long long)st.st_ino != ino || st.st_ctim.tv_sec != ctime_s || st.st_ctim.tv_nsec != ctime_ns)
        return 0;
    if (kind != 'd' && (unsigned long long)st.st_size != size) return 0;
    return 1;
}

static int copy_is_intact(const char *root, uint64_t file_count) {
    struct stat st;
    if (lstat(root, &st) != 0 || !safe_dir(&st)) return 0;
    char path[PATH_MAX];
    join(path, root, MANIFEST);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return 0;
    FILE *fh = fdopen(fd, "r");
    if (!fh || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != owner || (st.st_mode & 022)) {
        if (fh) fclose(fh); else close(fd);
        return 0;
    }
    int ok = 1;
    uint64_t files = 0, top = 0;
    char line[PATH_MAX + 128];
    int root_fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root_fd < 0) ok = 0;
    if (!fgets(line, sizeof line, fh) || strcmp(line, "dagu-manifest 1\n") != 0) ok = 0;
    while (ok && fgets(line, sizeof line, fh)) {
        /* "K INO SIZE CTIME_S CTIME_NS MODE(octal) REL": parsed by hand, sscanf was most of the check's time */
        size_t n = strlen(line);
        if (n < 3 || line[n - 1] != '\n' || line[1] != ' ') { ok = 0; break; }
        line[n - 1] = '\0';
        char kind = line[0], *p = line + 2, *end;
        unsigned long long fields[5];
        for (int i = 0; ok && i < 5; i++) {
            errno = 0;
            fields[i] = i == 2 ? (unsigned long long)strtoll(p, &end, 10) : strtoull(p, &end, i == 4 ? 8 : 10);
            if (end == p || *end != ' ' || errno) ok = 0;
            p = end + 1;
        }
        if (!ok || *p == '\0') { ok = 0; break; }
        ok = entry_matches(root_fd, kind, fields[0], fields[1], (long long)fields[2], (long)fields[3],
                           (unsigned)fields[4], p);
        files += kind == 'f';
        top += strchr(p, '/') == NULL;
    }
    fclose(fh);
    if (root_fd >= 0) close(root_fd);
    if (!ok || files != file_count) return 0;
    /* Sub-directories are covered by their ctime; the top one was renamed into place (which sets its
     * ctime), so count its entries instead: nothing may have been added beside the copy. */
    DIR *d = opendir(root);
    if (!d) return 0;
    uint64_t seen = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) seen++;
    closedir(d);
    return seen == top + 1;
}

/* ---- unpacking ---- */

struct stream {
    int fd;
    uint64_t left;        /* payload bytes not yet read from the file */
    z_stream z;
    uint8_t in[CHUNK], out[CHUNK];
    size_t pos, len;      /* unread decompressed bytes are out[pos..len) */
    int ended;
    struct sha256 hash;
};

static void fill(struct stream *s) {
    s->pos = s->len = 0;
    while (s->len == 0 && !s->ended) {
        if (s->z.avail_in == 0) {
            size_t want = s->left < CHUNK ? (size_t)s->left : CHUNK;
            ssize_t got = want ? read(s->fd, s->in, want) : 0;
            if (got <= 0) die("this binary is damaged (it is shorter than its archive); copy it again");
            sha256_update(&s->hash, s->in, (size_t)got);
            s->left -= (uint64_t)got;
            s->z.next_in = s->in;
            s->z.avail_in = (uInt)got;
        }
        s->z.next_out = s->out;
        s->z.avail_out = CHUNK;
        int rc = inflate(&s->z, Z_NO_FLUSH);
        if (rc == Z_STREAM_END) s->ended = 1;
        else if (rc != Z_OK && rc != Z_BUF_ERROR) die("this binary is damaged (bad archive data); copy it again");
        s->len = CHUNK - s->z.avail_out;
    }
}

/* Read exactly n decompressed bytes into dst, or write them to fd when dst is NULL.  Returns 0 at a clean end. */
static int take(struct stream *s, void *dst, uint64_t n, int fd, const char *what) {
    uint8_t *p = dst;
    while (n > 0) {
        if (s->pos == s->len) {
            if (s->ended) return 0;
            fill(s);
            if (s->len == 0) return 0;
        }
        size_t k = s->len - s->pos;
        if (k > n) k = (size_t)n;
        if (p) { memcpy(p, s->out + s->pos, k); p += k; }
        else if (write(fd, s->out + s->pos, k) != (ssize_t)k) die("cannot write %s: %s", what, strerror(errno));
        s->pos += k;
        n -= k;
    }
    return 1;
}

static int plain_path(const char *rel) {
    if (!rel[0] || rel[0] == '/') return 0;
    for (const char *p = rel; *p;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) return 0;
        p += n + (slash != NULL);
    }
    return 1;
}

static void unpack(int self, const struct trailer *t, const char *dir) {
    static struct stream s;
    memset(&s, 0, sizeof s);
    s.fd = self;
    sha256_init(&s.hash);
    if (lseek(self, 0, SEEK_SET) != 0) die("cannot read this binary: %s", strerror(errno));
    for (uint64_t left = t->payload_offset; left > 0;) {  /* the program part counts towards the hash */
        ssize_t got = read(self, s.in, left < CHUNK ? (size_t)left : CHUNK);
        if (got <= 0) die("cannot read this binary: %s", got < 0 ? strerror(errno) : "short file");
        sha256_update(&s.hash, s.in, (size_t)got);
        left -= (uint64_t)got;
    }
    s.left = t->payload_size;
    if (inflateInit(&s.z) != Z_OK) die("zlib: cannot start");
    uint64_t files = 0;
    for (;;) {
        uint8_t head[13];
        if (!take(&s, head, sizeof head, -1, NULL)) break;
        char kind = (char)head[0];
        unsigned mode = head[1] | (unsigned)head[2] << 8;
        unsigned plen = head[3] | (unsigned)head[4] << 8;
        uint64_t size = le64(head + 5);
        char rel[PATH_MAX], path[PATH_MAX];
        if (plen == 0 || plen >= sizeof rel || !take(&s, rel, plen, -1, NULL))
            die("this binary is damaged (bad archive entry); copy it again");
        rel[plen] = '\0';
        if (!plain_path(rel)) die("this binary is damaged (bad path %s); copy it again", rel);
        join(path, dir, rel);
        if (kind == 'd') {
            if (mkdir(path, 0700) != 0 && errno != EEXIST) die("cannot create %s: %s", path, strerror(errno));
        } else if (kind == 'l') {
            char target[PATH_MAX];
            if (size >= sizeof target || !take(&s, target, size, -1, NULL)) die("this binary is damaged");
            target[size] = '\0';
            if (symlink(target, path) != 0) die("cannot create %s: %s", path, strerror(errno));
        } else if (kind == 'f') {
            int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
            if (fd < 0) die("cannot create %s: %s", path, strerror(errno));
            if (!take(&s, NULL, size, fd, path)) die("this binary is damaged (a file is cut short); copy it again");
            if (fchmod(fd, (mode & 0100) ? 0500 : 0400) != 0 || close(fd) != 0)
                die("cannot write %s: %s", path, strerror(errno));
            files++;
        } else {
            die("this binary is damaged (unknown entry kind); copy it again");
        }
    }
    inflateEnd(&s.z);
    uint8_t digest[32];
    sha256_final(&s.hash, digest);
    if (s.left != 0 || memcmp(digest, t->sha256, 32) != 0 || files != t->file_count)
        die("this binary is damaged (checksum mismatch); copy it again");
}

static FILE *manifest_out;
static size_t manifest_skip;

static int record(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)flag;
    if (ftw->level == 0) return 0;
    const char *rel = path + manifest_skip;
    char kind = S_ISDIR(st->st_mode) ? 'd' : S_ISLNK(st->st_mode) ? 'l' : 'f';
    fprintf(manifest_out, "%c %llu %llu %lld %ld %o %s\n", kind, (unsigned long long)st->st_ino,
            (unsigned long long)st->st_size, (long long)st->st_ctim.tv_sec, (long)st->st_ctim.tv_nsec,
            (unsigned)st->st_mode, rel);
    return 0;
}

static void write_manifest(const char *root, const char *dir) {
    char path[PATH_MAX], tmp[PATH_MAX];
    join(path, dir, MANIFEST);
    join(tmp, root, ".manifest-XXXXXX");
    int fd = mkstemp(tmp);  /* written outside the tree, so the walk does not see it */
    if (fd < 0 || !(manifest_out = fdopen(fd, "w"))) die("cannot write %s: %s", tmp, strerror(errno));
    fputs("dagu-manifest 1\n", manifest_out);
    manifest_skip = strlen(dir) + 1;
    if (nftw(dir, record, 32, FTW_PHYS) != 0) die("cannot list %s: %s", dir, strerror(errno));
    if (fchmod(fd, 0400) != 0 || fclose(manifest_out) != 0 || rename(tmp, path) != 0)
        die("cannot write %s: %s", path, strerror(errno));
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *dir) {
    nftw(dir, remove_entry, 32, FTW_DEPTH | FTW_PHYS);
}

/* Remove what unpacking left in root when it was killed: .unpack-*, .stale-*, .manifest-* over an hour old. */
static void sweep(const char *root) {
    DIR *d = opendir(root);
    if (!d) return;
    time_t now = time(NULL);
    for (struct dirent *e; (e = readdir(d));) {
        char path[PATH_MAX];
        struct stat st;
        if (strncmp(e->d_name, ".unpack-", 8) && strncmp(e->d_name, ".stale-", 7) && strncmp(e->d_name, ".manifest-", 10))
            continue;
        if (lstat(join(path, root, e->d_name), &st) == 0 && st.st_uid == owner && now - st.st_mtime > 3600)
            remove_tree(path);
    }
    closedir(d);
}

/* Put a fresh copy at final: unpack beside it, then rename over whatever is there. */
static void install(int self, const struct trailer *t, const char *root, const char *final) {
    char tmp[PATH_MAX], stale[PATH_MAX], old[PATH_MAX];
    sweep(root);
    join(tmp, root, ".unpack-XXXXXX");
    if (!mkdtemp(tmp)) die("cannot create a directory in %s: %s", root, strerror(errno));
    memcpy(unpacking, tmp, sizeof unpacking);
    unpack(self, t, tmp);
    write_manifest(root, tmp);
    for (int attempt = 0; attempt < 5; attempt++) {
        if (rename(tmp, final) == 0) {
            unpacking[0] = '\0';
            return;
        }
        if (errno != EEXIST && errno != ENOTEMPTY) die("cannot rename %s: %s", tmp, strerror(errno));
        if (copy_is_intact(final, t->file_count)) {  /* a concurrent start won the race */
            remove_tree(tmp);
            unpacking[0] = '\0';
            return;
        }
        join(stale, root, ".stale-XXXXXX");
        if (!mkdtemp(stale)) die("cannot create a directory in %s: %s", root, strerror(errno));
        rename(final, join(old, stale, "old"));  /* a damaged or changed copy: out of the way, then retry */
        remove_tree(stale);
    }
    die("cannot put the unpacked copy at %s", final);
}

static int open_self(const char *argv0) {
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd < 0 && strchr(argv0, '/')) fd = open(argv0, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("cannot open this binary (is /proc mounted?): %s", strerror(errno));
    return fd;
}

int main(int argc, char **argv) {
    (void)argc;
    owner = geteuid();
    int self = open_self(argv[0]);
    struct stat st;
    uint8_t raw[sizeof(struct trailer)];
    if (fstat(self, &st) != 0 || st.st_size < (off_t)sizeof raw ||
        pread(self, raw, sizeof raw, st.st_size - (off_t)sizeof raw) != (ssize_t)sizeof raw)
        die("cannot read this binary's trailer");
    struct trailer t;
    memcpy(t.magic, raw + 80, 8);
    if (memcmp(t.magic, MAGIC, 8) != 0) die("this binary is damaged (no archive trailer); copy it again");
    t.payload_offset = le64(raw);
    t.payload_size = le64(raw + 8);
    t.file_count = le64(raw + 16);
    memcpy(t.sha256, raw + 24, 32);
    memcpy(t.tag, raw + 56, 24);
    t.tag[23] = '\0';
    if (!t.tag[0] || strspn(t.tag, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-") != strlen(t.tag))
        die("this binary is damaged (bad trailer); copy it again");
    if (t.payload_offset + t.payload_size + sizeof raw != (uint64_t)st.st_size)
        die("this binary is damaged (its size does not match its trailer); copy it again");

    char root[PATH_MAX], final[PATH_MAX], exe[PATH_MAX];
    char key[24 + 33];
    int n = snprintf(key, sizeof key, "%s-", t.tag);
    for (int i = 0; i < 16; i++) n += snprintf(key + n, sizeof key - (size_t)n, "%02x", t.sha256[i]);
    cache_root(root);
    join(final, root, key);
    if (!copy_is_intact(final, t.file_count)) {
        struct stat old;
        if (lstat(final, &old) == 0)
            fprintf(stderr, "dagu: %s was changed after it was unpacked; unpacking it again\n", final);
        install(self, &t, root, final);
    }
    close(self);
    join(exe, final, "dagu");
    argv[0] = exe;
    execv(exe, argv);
    int err = errno;
    die("cannot run %s: %s%s", exe, strerror(err),
        err == EACCES ? " (is its file system mounted noexec? set DAGU_UNPACK_DIR elsewhere)" : "");
    return 127;
}
