/* Reading plugin and theme files beneath their folder (see file.h). The kernel's openat2 with
 * RESOLVE_BENEATH resolves every component, symbolic links included, without ever leaving the
 * folder; where it is missing (Linux before 5.6), the real path is checked against the
 * folder's real path instead. */
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int open_beneath_kernel(int dirfd, const char *rel)
{
#ifdef SYS_openat2
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
#else
    (void)dirfd;
    (void)rel;
    errno = ENOSYS;
    return -1;
#endif
}

/* Is the real path of `path` the folder `realroot` or beneath it? */
static int beneath(const char *realroot, const char *real)
{
    size_t n = strlen(realroot);
    if (n == 1 && realroot[0] == '/')
        return 1;
    return !strncmp(real, realroot, n) && (real[n] == '/' || real[n] == '\0');
}

static int open_beneath_fallback(const char *root, const char *rel, hl_err *err)
{
    char realroot[PATH_MAX], path[PATH_MAX], real[PATH_MAX];
    if (!realpath(root, realroot))
        return hl_err_set(err, HL_ENOTFOUND, "%s: %s", root, strerror(errno));
    if ((size_t)snprintf(path, sizeof path, "%s/%s", realroot, rel) >= sizeof path)
        return hl_err_set(err, HL_EINVAL, "%s/%s: path too long", root, rel);
    if (!realpath(path, real))
        return errno == ENOENT || errno == ENOTDIR ? hl_err_set(err, HL_ENOTFOUND, "%s/%s: not found", root, rel)
                                                   : hl_err_set(err, HL_EIO, "%s/%s: %s", root, rel, strerror(errno));
    if (!beneath(realroot, real))
        return hl_err_set(err, HL_EINVAL, "%s/%s leads outside %s", root, rel, root);
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW);
    if (fd < 0)
        return hl_err_set(err, HL_EIO, "%s/%s: %s", root, rel, strerror(errno));
    return fd;
}

int hl_file_open_beneath(const char *root, const char *rel, struct stat *st, hl_err *err)
{
    if (!root || !rel || !*rel || rel[0] == '/')
        return hl_err_set(err, HL_EINVAL, "%s: not a relative path inside %s", rel ? rel : "(null)",
                          root ? root : "(null)");
    int dirfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return hl_err_set(err, errno == ENOENT ? HL_ENOTFOUND : HL_EIO, "%s: %s", root, strerror(errno));
    int fd = open_beneath_kernel(dirfd, rel);
    int e = errno;
    close(dirfd);
    if (fd < 0 && (e == ENOSYS || e == EPERM)) { /* no openat2, or a seccomp filter refusing it */
        fd = open_beneath_fallback(root, rel, err);
        if (fd < 0)
            return fd;
    } else if (fd < 0) {
        if (e == ENOENT || e == ENOTDIR)
            return hl_err_set(err, HL_ENOTFOUND, "%s/%s: not found", root, rel);
        if (e == EXDEV || e == ELOOP)
            return hl_err_set(err, HL_EINVAL, "%s/%s leads outside %s (symbolic link or \"..\")", root, rel, root);
        return hl_err_set(err, HL_EIO, "%s/%s: %s", root, rel, strerror(e));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        e = errno;
        close(fd);
        return hl_err_set(err, HL_EIO, "%s/%s: %s", root, rel, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return hl_err_set(err, HL_EINVAL, "%s/%s: not a regular file", root, rel);
    }
    if (st)
        *st = sb;
    return fd;
}

int hl_file_read_beneath(const char *root, const char *rel, size_t max, char **out, size_t *len,
                         struct stat *st, hl_err *err)
{
    struct stat sb;
    *out = NULL;
    int fd = hl_file_open_beneath(root, rel, &sb, err);
    if (fd < 0)
        return fd;
    if ((unsigned long long)sb.st_size > max) {
        close(fd);
        return hl_err_set(err, HL_ETOOBIG, "%s/%s: larger than %zu bytes", root, rel, max);
    }
    size_t want = (size_t)sb.st_size, n = 0;
    char *buf = malloc(want + 1);
    if (!buf) {
        close(fd);
        return hl_err_set(err, HL_ENOMEM, "out of memory reading %s/%s", root, rel);
    }
    int rc = HL_OK;
    while (n < want) {
        ssize_t r = read(fd, buf + n, want - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = hl_err_set(err, HL_EIO, "%s/%s: %s", root, rel, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    char extra;
    if (rc == HL_OK && n == want && read(fd, &extra, 1) > 0) /* grew since fstat */
        rc = hl_err_set(err, HL_ETOOBIG, "%s/%s: larger than %zu bytes", root, rel, max);
    close(fd);
    if (rc != HL_OK) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    if (st)
        *st = sb;
    return HL_OK;
}

/* nftw gives no user pointer: the walk's state lives here for the duration of one walk (the
 * core is single-threaded per process). */
static struct {
    char realroot[PATH_MAX];
    hl_err *err;
    int bad;
} walk;

static int visit(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (type != FTW_SL && type != FTW_SLN)
        return 0;
    char real[PATH_MAX], target[PATH_MAX];
    ssize_t n = readlink(path, target, sizeof target - 1);
    target[n > 0 ? n : 0] = '\0';
    if (type == FTW_SLN || !realpath(path, real)) {
        walk.bad = hl_err_set(walk.err, HL_EINVAL, "%s -> %s leads nowhere (a dangling symbolic link)", path, target);
        return 1;
    }
    if (!beneath(walk.realroot, real)) {
        walk.bad = hl_err_set(walk.err, HL_EINVAL, "%s -> %s leads outside the folder", path, target);
        return 1;
    }
    return 0;
}

int hl_file_check_tree(const char *root, hl_err *err)
{
    if (!realpath(root, walk.realroot))
        return hl_err_set(err, HL_ENOTFOUND, "%s: %s", root, strerror(errno));
    walk.err = err;
    walk.bad = HL_OK;
    /* FTW_PHYS: links are reported, not followed, so each one is judged by where it leads. */
    if (nftw(root, visit, 16, FTW_PHYS) < 0 && walk.bad == HL_OK)
        return hl_err_set(err, HL_EIO, "%s: %s", root, strerror(errno));
    return walk.bad;
}
