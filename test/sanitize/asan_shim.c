/*
 * Preloaded after libasan into the server by test/sanitize.sh.
 *
 * With libasan preloaded, a constructor of a library the server links
 * (libgpg-error's) calls bindtextdomain() before AddressSanitizer has
 * initialised, and its allocation initialises ASan from inside glibc's
 * gettext code, under glibc's lock; the server's own bindtextdomain() in
 * main() then waits on that lock forever. This wrapper allocates once
 * before calling glibc's bindtextdomain(), so ASan initialises outside it.
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
