/* cmd-cam.c - `ecsnet cam IMAGE --out DIR`: the CAMs, erased CAMs and masks of one image as
 * files.
 *
 * The command goes through the same door as POST /cam (api/cam.h): its options are the
 * request's parameters (api_cam_params_parse), the model is opened as the server opens it
 * (api_model_open), the image is decoded, its labels resolved and the model run by the code a
 * server worker runs (api_cam_compute), and the files are rendered by the answer's own
 * encoders (api_cam_write_files). So for the same image, model and options `ecsnet cam` and
 * POST /cam give the same pixels. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cam.h"
#include "labels.h"
#include "ecs/ecsnet.h"
#include "ecs/image.h"
#include "ecs/path.h"
#include "ecs/safetensors.h"

/* Every image output but the overlay, and the scores: what `ecsnet cam` has always written. */
#define CAM_DEFAULT_OUTPUTS                                                                        \
  "cam,erased_cam,mask,cam_mask,ecs_mask,head_mask,scores,erased_image,erase_region"

typedef struct cam_args {
  const char *image, *model, *out;
  const char *labels, *scales, *outputs, *alpha_bg;
  int want_float, flip;
  const char *refine; /* "true", "false", or NULL: the model's default */
  long threads;
  float label_threshold; /* 0: the model's own */
  long label_topk;       /* 0: 3 */
} cam_args;

static int parse_cam_args(int argc, char **argv, cam_args *c) {
  args a = {argc, argv, 1};
  for (a.i = 2; a.i < argc; a.i++) {
    const char *o = argv[a.i], *v;
    if (strcmp(o, "--model") == 0) {
      if (!(c->model = val(&a))) return usage("--model needs a file");
    } else if (strcmp(o, "--labels") == 0) {
      if (!(c->labels = val(&a))) return usage("--labels needs class names");
    } else if (strcmp(o, "--out") == 0) {
      if (!(c->out = val(&a))) return usage("--out needs a folder");
    } else if (strcmp(o, "--outputs") == 0) {
      if (!(c->outputs = val(&a))) return usage("--outputs needs output names");
    } else if (strcmp(o, "--float") == 0) {
      c->want_float = 1;
    } else if (strcmp(o, "--flip") == 0) {
      c->flip = 1;
    } else if (strcmp(o, "--alpha-bg") == 0) {
      if (!(c->alpha_bg = val(&a))) return usage("--alpha-bg needs a number in [0, 1]");
    } else if (strcmp(o, "--refine") == 0) {
      c->refine = "true";
    } else if (strcmp(o, "--no-refine") == 0) {
      c->refine = "false";
    } else if (strcmp(o, "--scales") == 0) {
      if (!(c->scales = val(&a))) return usage("--scales needs numbers, comma separated");
    } else if (strcmp(o, "--label-threshold") == 0) {
      if (!(v = val(&a)) || !parse_float(v, 0.0f, 1.0f, &c->label_threshold))
        return usage("--label-threshold needs 0..1 (0: the model's own)");
    } else if (strcmp(o, "--label-topk") == 0) {
      if (!(v = val(&a)) || !parse_int(v, 1, 20, &c->label_topk))
        return usage("--label-topk needs 1..20");
    } else if (strcmp(o, "--threads") == 0) {
      if (!(v = val(&a)) || !parse_int(v, 1, 1024, &c->threads))
        return usage("--threads needs 1..1024");
    } else if (strcmp(o, "--device") == 0) {
      if (!(g_device = val(&a)) || !device_name_ok(g_device))
        return usage("--device needs auto, cpu, cuda or cuda:N");
    } else if (o[0] == '-') {
      return usage("cam: unknown option %s", o);
    } else if (!c->image) {
      c->image = o;
    } else {
      return usage("cam takes one IMAGE");
    }
  }
  if (!c->image) return usage("cam needs an IMAGE");
  if (!c->out) return usage("cam needs --out DIR");
  if ((!c->model || !*c->model) && !(c->model = shipped_model()))
    return usage("cam needs --model MODEL (or $ECSNET_MODEL; no shipped model was found)");
  return 0;
}

/* The options as POST /cam parameters, checked by the api's own code. */
static int cam_request(const cam_args *c, api_cam_request *req) {
  api_kv kv[8];
  size_t n = 0;
  if (c->labels) kv[n++] = (api_kv){"labels", c->labels};
  if (c->scales) kv[n++] = (api_kv){"scales", c->scales};
  if (c->flip) kv[n++] = (api_kv){"flip", "true"};
  if (c->alpha_bg) kv[n++] = (api_kv){"alpha_bg", c->alpha_bg};
  if (c->refine) kv[n++] = (api_kv){"refine", c->refine};
  kv[n++] = (api_kv){"outputs", c->outputs ? c->outputs : CAM_DEFAULT_OUTPUTS};
  api_cam_limits lim = {0};
  api_error ae;
  if (!api_cam_params_parse(kv, n, &lim, req, &ae)) return usage("cam: %s", ae.message);
  return 0;
}

/* --float: the float32 CAMs, erased CAMs, scores and labels the result holds. */
static ecs_status write_floats(const char *dir, const api_model_info *info, const ecs_cam_result *r,
                               ecs_err *e) {
  char path[ECS_PATH_MAX];
  ecs_status st = ecs_path_join(path, sizeof path, dir, "cams.safetensors", e);
  if (st != ECS_OK) return st;
  ecs_st_writer *sw = ecs_st_writer_new(e);
  if (!sw) return e->status;
  int64_t ne[3] = {r->n_labels, r->h, r->w}, ns[1] = {info->n_classes}, nl[1] = {r->n_labels};
  if (r->cams) st = ecs_st_writer_add(sw, "cams", ECS_F32, 3, ne, r->cams, e);
  if (st == ECS_OK && r->erased_cams)
    st = ecs_st_writer_add(sw, "erased_cams", ECS_F32, 3, ne, r->erased_cams, e);
  if (st == ECS_OK && r->scores) st = ecs_st_writer_add(sw, "scores", ECS_F32, 1, ns, r->scores, e);
  if (st == ECS_OK) st = ecs_st_writer_add(sw, "labels", ECS_I32, 1, nl, r->labels, e);
  if (st == ECS_OK) st = ecs_st_writer_save(sw, path, e);
  ecs_st_writer_free(sw);
  return st;
}

/* Reads the image file into the request, as a body carries it to the server. */
static ecs_status read_image(const char *path, api_cam_request *req, ecs_err *e) {
  uint8_t *bytes = NULL;
  size_t n = 0;
  ecs_status st = ecs_file_read(path, 0, &bytes, &n, e);
  if (st != ECS_OK) return st;
  req->image_owned = bytes;
  req->image = bytes;
  req->image_len = n;
  return ECS_OK;
}

/* An api error of the run as one line: an unknown label is a usage error and lists the
 * model's classes; the image's name goes before a decoding error. */
static int run_failed(const api_error *ae, const cam_args *c, const api_model_info *info) {
  if (ae->status == 422) {
    if (info->n_classes > 32) { /* the message names the closest; 1000 names are no help */
      fprintf(stderr, "ecsnet: %s\n", ae->message);
      return USAGE_EXIT;
    }
    fprintf(stderr, "ecsnet: %s (the model's classes:", ae->message);
    for (int k = 0; k < info->n_classes; k++)
      fprintf(stderr, " %s", info->class_names[k]);
    fprintf(stderr, ")\n");
    return USAGE_EXIT;
  }
  if (ae->status == 400 || ae->status == 413)
    fprintf(stderr, "ecsnet: %s: %s\n", c->image, ae->message);
  else
    fprintf(stderr, "ecsnet: %s\n", ae->message);
  return 1;
}

int cmd_cam(int argc, char **argv) {
  cam_args c = {.model = getenv("ECSNET_MODEL")};
  api_cam_request req;
  int rc = parse_cam_args(argc, argv, &c);
  if (rc || (rc = cam_request(&c, &req))) return rc;
  ecs_err e = {0};
  api_model_opts mo = {.path = c.model,
                       .device = cli_device_name(),
                       .n_workers = 1,
                       .threads = (int)c.threads,
                       .engine = g_engine};
  api_model *m = NULL;
  if (api_model_open(&mo, &m, &e) != ECS_OK) return failure(&e);
  const api_model_info *info = api_model_describe(m);
  ecs_image *img = NULL;
  ecs_cam_result *r = NULL;
  api_cam_timings t;
  api_cam_call call = {.label_threshold = c.label_threshold, .label_topk = (int)c.label_topk};
  api_error ae;
  rc = 1;
  if (read_image(c.image, &req, &e) != ECS_OK) goto fail;
  if (mkdir(c.out, 0777) != 0 && errno != EEXIST) {
    ecs_err_set(&e, ECS_ERR_IO, "%s: cannot create the folder: %s", c.out, strerror(errno));
    goto fail;
  }
  if (!api_cam_compute(&req, m, &call, &img, &r, &t, &ae)) {
    rc = run_failed(&ae, &c, info);
    goto done;
  }
  if (api_cam_write_files(c.out, &req, info, img, r, &e) != ECS_OK) goto fail;
  if (c.want_float && write_floats(c.out, info, r, &e) != ECS_OK) goto fail;
  printf("labels:");
  for (int i = 0; i < r->n_labels; i++)
    printf(" %s", api_label_name(info, r->labels[i]));
  printf("\nwrote %s/ (%dx%d, %lld px in Phi)\n", c.out, r->w, r->h, (long long)r->phi);
  rc = 0;
  goto done;
fail:
  failure(&e);
done:
  ecs_cam_result_free(r);
  ecs_image_free(img);
  api_cam_request_free(&req);
  api_model_free(m);
  return rc;
}
