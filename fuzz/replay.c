/*
 * replay.c: runs a fuzz target over its seed corpus, so that the ordinary test run checks every seed (and every
 * crash reproducer kept in the corpus) without libFuzzer.
 *
 *   replay_X [FILE|DIR]...   (default: the target's corpus directory, CORPUS_DIR)
 *
 * Exits 0 when every input ran; a crash or sanitizer report ends the run as it would under libFuzzer.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;
	int rc = -1;

	if (f == NULL) {
		fprintf(stderr, "replay: cannot open %s\n", path);
		return -1;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
		goto out;
	/* An exact-size copy, so that reads past the input are caught by the sanitizers. */
	buf = malloc(n > 0 ? (size_t)n : 1);
	if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n)
		goto out;
	LLVMFuzzerTestOneInput(buf, (size_t)n);
	rc = 0;
out:
	if (rc != 0)
		fprintf(stderr, "replay: cannot read %s\n", path);
	free(buf);
	fclose(f);
	return rc;
}

static int replay_path(const char *path, unsigned *count)
{
	struct stat st;
	struct dirent **names;
	int n, i, rc = 0;

	if (stat(path, &st) != 0) {
		fprintf(stderr, "replay: no such file or directory: %s\n", path);
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		(*count)++;
		return replay_file(path);
	}
	n = scandir(path, &names, NULL, alphasort);
	if (n < 0)
		return -1;
	for (i = 0; i < n; i++) {
		char child[4096];

		if (names[i]->d_name[0] != '.' && rc == 0) {
			snprintf(child, sizeof(child), "%s/%s", path, names[i]->d_name);
			rc = replay_path(child, count);
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

int main(int argc, char **argv)
{
	unsigned count = 0;
	int i, rc = 0;

	if (argc < 2)
		rc = replay_path(CORPUS_DIR, &count);
	for (i = 1; i < argc && rc == 0; i++)
		rc = replay_path(argv[i], &count);
	if (rc != 0)
		return 1;
	if (count == 0) {
		fprintf(stderr, "replay: the corpus is empty\n");
		return 1;
	}
	printf("replayed %u inputs\n", count);
	return 0;
}
