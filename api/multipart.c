/* multipart.c - multipart/form-data over a contiguous body.
 *
 * Only what browsers, curl and HTTP libraries send is accepted: parts separated by
 * CRLF "--boundary", each with a header block ending in CRLF CRLF and a Content-Disposition of
 * form-data with a quoted name. Anything else is a 400 with the reason, never a guess. The
 * parser never reads outside [body, body + len). */
#include "multipart.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *skip_ws(const char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  return s;
}

static bool is_token_char(char c) {
  return c > 32 && c < 127 && !strchr("()<>@,;:\\\"/[]?={}", c);
}

/* Reads a token or quoted-string parameter value into out (at most cap-1 chars). */
static const char *param_value(const char *s, char *out, size_t cap, bool *ok) {
  size_t n = 0;
  *ok = true;
  if (*s == '"') {
    s++;
    while (*s && *s != '"') {
      if (*s == '\\' && s[1]) s++;
      if (n + 1 >= cap)
        *ok = false;
      else
        out[n++] = *s;
      s++;
    }
    if (*s != '"')
      *ok = false;
    else
      s++;
  } else {
    while (*s && is_token_char(*s)) {
      if (n + 1 >= cap)
        *ok = false;
      else
        out[n++] = *s;
      s++;
    }
    if (n == 0) *ok = false;
  }
  out[n] = '\0';
  return s;
}

bool api_content_type_parse(const char *value, api_content_type *ct, api_error *err) {
  memset(ct, 0, sizeof *ct);
  const char *s = skip_ws(value ? value : "");
  size_t n = 0;
  bool slash = false;
  while (*s && (is_token_char(*s) || *s == '/')) {
    if (*s == '/') {
      if (slash || n == 0) break;
      slash = true;
    }
    if (n + 1 >= sizeof ct->media)
      return api_fail(err, 400, "invalid_content_type", "Content-Type is too long");
    ct->media[n++] = (char)tolower((unsigned char)*s);
    s++;
  }
  if (!slash || n < 3 || ct->media[n - 1] == '/')
    return api_fail(err, 400, "invalid_content_type", "Content-Type is not type/subtype");
  s = skip_ws(s);
  while (*s == ';') {
    s = skip_ws(s + 1);
    if (!*s) break; /* a trailing ';' is common and harmless */
    char name[32], val[128];
    size_t k = 0;
    while (*s && is_token_char(*s)) {
      if (k + 1 < sizeof name) name[k++] = (char)tolower((unsigned char)*s);
      s++;
    }
    name[k] = '\0';
    s = skip_ws(s);
    if (k == 0 || *s != '=')
      return api_fail(err, 400, "invalid_content_type", "malformed Content-Type parameter");
    bool ok;
    s = param_value(skip_ws(s + 1), val, sizeof val, &ok);
    if (!ok)
      return api_fail(err, 400, "invalid_content_type", "malformed Content-Type parameter '%s'",
                      name);
    if (strcmp(name, "boundary") == 0) {
      if (strlen(val) > API_BOUNDARY_MAX)
        return api_fail(err, 400, "invalid_content_type", "multipart boundary is too long");
      strcpy(ct->boundary, val);
    } else if (strcmp(name, "charset") == 0) {
      if (strlen(val) >= sizeof ct->charset)
        return api_fail(err, 400, "invalid_content_type", "charset is too long");
      strcpy(ct->charset, val);
    }
    s = skip_ws(s);
  }
  if (*s) return api_fail(err, 400, "invalid_content_type", "malformed Content-Type");
  return true;
}

static const char *find(const char *hay, size_t hay_len, const char *needle, size_t n) {
  if (n == 0 || hay_len < n) return NULL;
  return memmem(hay, hay_len, needle, n);
}

/* Copies [s, s+n) into the string arena; returns the copy. */
static char *arena_put(char **cur, const char *s, size_t n) {
  char *r = *cur;
  memcpy(r, s, n);
  r[n] = '\0';
  *cur += n + 1;
  return r;
}

/* Parses one part's header block [h, h+hlen) (lines separated by CRLF). */
static bool part_headers(const char *h, size_t hlen, api_part *p, char **arena, api_error *err) {
  bool have_disp = false;
  const char *end = h + hlen;
  while (h < end) {
    const char *eol = find(h, (size_t)(end - h), "\r\n", 2);
    if (!eol) eol = end;
    size_t line_len = (size_t)(eol - h);
    char line[1024];
    if (line_len >= sizeof line)
      return api_fail(err, 400, "invalid_multipart", "multipart header line is too long");
    memcpy(line, h, line_len);
    line[line_len] = '\0';
    if (memchr(line, '\0', line_len))
      return api_fail(err, 400, "invalid_multipart", "NUL byte in a multipart header");
    char *colon = strchr(line, ':');
    if (!colon) return api_fail(err, 400, "invalid_multipart", "malformed multipart header");
    *colon = '\0';
    const char *val = skip_ws(colon + 1);
    if (strcasecmp(line, "Content-Disposition") == 0) {
      if (strncasecmp(val, "form-data", 9) != 0)
        return api_fail(err, 400, "invalid_multipart", "part is not form-data");
      const char *s = skip_ws(val + 9);
      while (*s == ';') {
        s = skip_ws(s + 1);
        char name[32], v[256];
        size_t k = 0;
        while (*s && is_token_char(*s) && *s != '*') {
          if (k + 1 < sizeof name) name[k++] = (char)tolower((unsigned char)*s);
          s++;
        }
        name[k] = '\0';
        s = skip_ws(s);
        if (k == 0 || *s != '=')
          return api_fail(err, 400, "invalid_multipart", "malformed Content-Disposition");
        bool ok;
        s = skip_ws(param_value(skip_ws(s + 1), v, sizeof v, &ok));
        if (!ok) return api_fail(err, 400, "invalid_multipart", "malformed Content-Disposition");
        if (strcmp(name, "name") == 0)
          p->name = arena_put(arena, v, strlen(v));
        else if (strcmp(name, "filename") == 0)
          p->filename = arena_put(arena, v, strlen(v));
      }
      if (*s) return api_fail(err, 400, "invalid_multipart", "malformed Content-Disposition");
      have_disp = true;
    } else if (strcasecmp(line, "Content-Type") == 0) {
      p->content_type = arena_put(arena, val, strlen(val));
    }
    h = eol + 2;
  }
  if (!have_disp || !p->name)
    return api_fail(err, 400, "invalid_multipart", "part without a Content-Disposition name");
  return true;
}

bool api_multipart_parse(const char *body, size_t len, const char *boundary, size_t max_parts,
                         api_parts *out, api_error *err) {
  memset(out, 0, sizeof *out);
  size_t blen = boundary ? strlen(boundary) : 0;
  if (blen == 0)
    return api_fail(err, 400, "invalid_multipart", "multipart Content-Type has no boundary");
  char delim[API_BOUNDARY_MAX + 5]; /* CRLF "--" boundary */
  memcpy(delim, "\r\n--", 4);
  memcpy(delim + 4, boundary, blen);
  size_t dlen = blen + 4;

  /* The first delimiter may open the body without the CRLF. */
  const char *p = body, *end = body + len;
  if (len >= dlen - 2 && memcmp(body, delim + 2, dlen - 2) == 0) {
    p = body + dlen - 2;
  } else {
    const char *d = find(body, len, delim, dlen);
    if (!d) return api_fail(err, 400, "invalid_multipart", "multipart boundary not found");
    p = d + dlen;
  }
  /* Every name or filename is shorter than its header block, so len + a NUL per string
   * bounds the arena. */
  out->strings = malloc(len + 3 * (max_parts + 1) + 1);
  out->parts = calloc(max_parts ? max_parts : 1, sizeof *out->parts);
  if (!out->strings || !out->parts) {
    api_parts_free(out);
    return api_fail(err, 503, "out_of_memory", "the server is short of memory");
  }
  char *arena = out->strings;
  for (;;) {
    /* After a delimiter: "--" closes the body, CRLF opens a part (transport padding allowed). */
    if (end - p >= 2 && p[0] == '-' && p[1] == '-') return true;
    while (p < end && (*p == ' ' || *p == '\t'))
      p++;
    if (end - p < 2 || p[0] != '\r' || p[1] != '\n') {
      api_parts_free(out);
      return api_fail(err, 400, "invalid_multipart", "multipart body is truncated");
    }
    p += 2;
    const char *hend = find(p, (size_t)(end - p), "\r\n\r\n", 4);
    const char *hbody;
    size_t hlen;
    if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') { /* a part with no headers */
      hlen = 0;
      hbody = p + 2;
    } else if (!hend) {
      api_parts_free(out);
      return api_fail(err, 400, "invalid_multipart", "multipart part headers are truncated");
    } else {
      hlen = (size_t)(hend - p);
      hbody = hend + 4;
    }
    if (out->n == max_parts) {
      api_parts_free(out);
      return api_fail(err, 400, "too_many_parts", "more than %zu multipart parts", max_parts);
    }
    api_part *part = &out->parts[out->n];
    memset(part, 0, sizeof *part);
    if (!part_headers(p, hlen, part, &arena, err)) {
      api_parts_free(out);
      return false;
    }
    const char *next = find(hbody, (size_t)(end - hbody), delim, dlen);
    if (!next) {
      api_parts_free(out);
      return api_fail(err, 400, "invalid_multipart", "multipart body is truncated");
    }
    part->data = hbody;
    part->len = (size_t)(next - hbody);
    out->n++;
    p = next + dlen;
  }
}

void api_parts_free(api_parts *p) {
  if (!p) return;
  free(p->parts);
  free(p->strings);
  p->parts = NULL;
  p->strings = NULL;
  p->n = 0;
}
