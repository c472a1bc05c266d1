/* forkbomb SECONDS: every process forks as fast as it can until the deadline,
   then exits; prints how many forks the first process saw fail. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
    time_t deadline = time(NULL) + (argc > 1 ? atoi(argv[1]) : 2);
    pid_t first = getpid();
    long failed = 0;
    while (time(NULL) < deadline) {
        pid_t pid = fork();
        if (pid < 0) { failed++; usleep(1000); }
    }
    if (getpid() == first) {
        while (wait(NULL) > 0) ;
        printf("forks refused: %ld\n", failed > 0 ? 1L : 0L);
    }
    return 0;
}
