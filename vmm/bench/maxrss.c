/* Run a command and report its peak resident set size, undisturbed by the caller.
 *
 * wait4's ru_maxrss for a child counts the memory the child had between fork and exec,
 * which for a child of Python is the whole interpreter's resident set. Started from
 * this small program instead, the measured command inherits a resident set of a few
 * hundred KiB, so the figure is the command's own (and that of the descendants it
 * waited for).
 *
 *     maxrss FD COMMAND [ARG...]
 *
 * writes "MAXRSS_KIB\n" to file descriptor FD once COMMAND has exited, and exits with
 * COMMAND's status (128 + the signal number if a signal killed it).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: maxrss FD COMMAND [ARG...]\n");
		return 2;
	}
	int fd = atoi(argv[1]);
	pid_t pid = fork();
	if (pid < 0) {
		perror("maxrss: fork");
		return 2;
	}
	if (pid == 0) {
		close(fd);
		execvp(argv[2], argv + 2);
		perror(argv[2]);
		_exit(127);
	}
	/* A signal meant for the command (Ctrl-C) reaches it through the process group. */
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	int status;
	struct rusage ru;
	if (wait4(pid, &status, 0, &ru) < 0) {
		perror("maxrss: wait4");
		return 2;
	}
	dprintf(fd, "%ld\n", ru.ru_maxrss);
	close(fd);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
