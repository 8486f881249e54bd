/*
 * Preloaded after libasan into the server by test/sanitize.sh.
 *
 * bindtextdomain(): with libasan preloaded, a constructor of a library the
 * server links (libgpg-error's) calls bindtextdomain() before
 * AddressSanitizer has initialised, and its allocation initialises ASan from
 * inside glibc's gettext code, under glibc's lock; the server's own
 * bindtextdomain() in main() then waits on that lock forever. The wrapper
 * allocates once before calling glibc's, so ASan initialises outside it.
 *
 * __ubsan_default_options(): UBSan reads UBSAN_OPTIONS only at its first
 * report, from /proc/self/environ, where the server has since written its
 * process title over the environment: the options were lost (no stack, no
 * abort). The runtime asks this hook first; getenv() still finds them.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>

char *
bindtextdomain(const char *domainname, const char *dirname)
{
	static char *(*real) (const char *, const char *);
	void *volatile block = malloc(1);	/* volatile: not optimised away */

	free(block);
	if (real == NULL)
		real = (char *(*) (const char *, const char *)) dlsym(RTLD_NEXT, "bindtextdomain");
	return real(domainname, dirname);
}

const char *
__ubsan_default_options(void)
{
	const char *options = getenv("UBSAN_OPTIONS");

	return options != NULL ? options : "";
}
