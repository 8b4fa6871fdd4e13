/* pyvmm-init: a tiny PID 1 for `pyvmm container run --init` (Docker's tini).

   A container's first process is PID 1 of its PID namespace, with two duties most
   programs do not know they have: orphans are reparented to it and must be reaped,
   or they stay zombies; and the kernel delivers it no signal it has not installed a
   handler for, so `stop`'s SIGTERM does nothing to a shell or a program that never
   expected to be PID 1. This program does both for the command it runs:

   - it blocks every signal and takes them with sigwaitinfo: SIGCHLD reaps every
     child that has exited; any other signal is passed on to the command;
   - the command runs in a process group of its own, which becomes the terminal's
     foreground group when there is one (so Ctrl-C reaches the command once);
   - when the command exits, so does this, with its status (128 + the signal that
     killed it); the kernel then ends whatever else is left in the namespace.

   argv: [--] COMMAND [ARG...]; COMMAND is looked up in PATH (127: not found, 126:
   found, not runnable, as the shell says). Static, so that it runs in any image; the
   engine copies it into the container's directory and binds it read-only at
   /sbin/pyvmm-init (bundle.py). */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int first = argc > 1 && strcmp(argv[1], "--") == 0 ? 2 : 1;
    if (first >= argc) {
        fputs("usage: pyvmm-init [--] COMMAND [ARG...]\n", stderr);
        return 2;
    }
    sigset_t all, before;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &before);
    pid_t child = fork();
    if (child < 0) {
        perror("pyvmm-init: fork");
        return 1;
    }
    if (child == 0) {
        setpgid(0, 0);
        if (isatty(STDIN_FILENO))
            tcsetpgrp(STDIN_FILENO, getpid()); /* SIGTTOU is still blocked here */
        sigprocmask(SIG_SETMASK, &before, NULL);
        execvp(argv[first], argv + first);
        int err = errno;
        fprintf(stderr, "pyvmm-init: %s: %s\n", argv[first], strerror(err));
        _exit(err == ENOENT ? 127 : 126);
    }
    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&all, &info);
        if (sig < 0)
            continue;
        if (sig != SIGCHLD) {
            kill(child, sig);
            continue;
        }
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            if (pid != child)
                continue; /* an orphan, reaped */
            if (WIFSIGNALED(status))
                return 128 + WTERMSIG(status);
            return WEXITSTATUS(status);
        }
    }
}
