/*
 * lgr_text.h: text forms shared by the JSON units (lgr_json, lgr_fjson) and the modules: numbers written in the C
 * locale whatever the process locale, the shortest decimal of a double in protojson's layout, and UTF-8 checks.
 *
 * Threading: every function is reentrant; the locale switch applies to the calling thread only.
 */
#ifndef LGR_TEXT_H
#define LGR_TEXT_H

#include <locale.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LGR_TEXT_DOUBLE_MAX 40 /* room for any lgr_text_double() result with its NUL */
#define LGR_TEXT_INT_MAX    24 /* room for a 64-bit integer, its sign and its NUL */

/*
 * Switches the calling thread to the C locale (snprintf and strtod follow LC_NUMERIC, which rsyslogd sets from the
 * environment: a German locale prints "12,5"). Returns what lgr_text_c_locale_leave() needs to switch back.
 */
locale_t lgr_text_c_locale_enter(void);
void lgr_text_c_locale_leave(locale_t old);

/* Writes the decimal digits of mag, with a '-' when neg, at the end of t; returns where they start. */
char *lgr_text_int(uint64_t mag, bool neg, char t[LGR_TEXT_INT_MAX]);

/*
 * The shortest decimal that reads back as v (finite), laid out as protojson lays it out: plain for
 * 1e-6 <= |v| < 1e21, else d[.ddd]e±X; "-0" for negative zero. Call inside the C locale. Returns the length
 * written to out (NUL-terminated).
 */
size_t lgr_text_double(double v, char out[LGR_TEXT_DOUBLE_MAX]);

/* Length of the well-formed UTF-8 sequence that starts s[0..n) (Unicode 3-7: no overlongs, surrogates), or 0. */
size_t lgr_text_utf8_seq(const unsigned char *s, size_t n);

/* True when s[0..n) is well-formed UTF-8. */
bool lgr_text_utf8_valid(const char *s, size_t n);

#endif
