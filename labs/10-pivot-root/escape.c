/* The classic chroot escape, run by lab 10's check inside the container as its root.
 *
 * chroot(2) changes the root directory but not the working directory, and ".." at a
 * process's root stays there only at the root itself: chroot into a subdirectory, and
 * the working directory is outside the new root, free to climb to the mount
 * namespace's real root, which chroot(".") then makes the root again. After a
 * chroot the host's tree is that real root; after pivot_root and the old root's
 * detach, the real root is the image, and the climb ends where it began.
 *
 * Usage: escape HOST-PATH: prints "escaped" if HOST-PATH exists after the climb (a file
 * the check made on the host), "contained" if not; exits 2 when a step is refused. */
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: escape HOST-PATH\n");
        return 2;
    }
    if (chroot("/bin") != 0) { /* any subdirectory of the container's root */
        perror("escape: chroot /bin");
        return 2;
    }
    for (int i = 0; i < 64; i++) /* the working directory is still the old "/" */
        if (chdir("..") != 0) {
            perror("escape: chdir ..");
            return 2;
        }
    if (chroot(".") != 0) {
        perror("escape: chroot .");
        return 2;
    }
    puts(access(argv[1], F_OK) == 0 ? "escaped" : "contained");
    return 0;
}
