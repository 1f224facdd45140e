/* cmd-cam.c - `ecsnet cam IMAGE --out DIR`: the CAMs, erased CAMs and masks of one image as
 * files.
 *
 * The command goes through the same door as POST /cam: its options are the request's
 * parameters (api_cam_params_parse), labels resolve as the server resolves them
 * (api_cam_resolve_labels), the model runs through the api's ECS-Net adapter, and the files
 * are rendered by the server's own encoders (api_cam_write_files). So for the same image,
 * model and options `ecsnet cam` and POST /cam give the same pixels. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cam-request.h"
#include "cam-response.h"
#include "ecs/ecsnet.h"
#include "ecs/image.h"
#include "ecs/path.h"
#include "ecs/safetensors.h"
#include "ecsnet-adapter.h"

/* Every image output but the overlay, and the scores: what `ecsnet cam` has always written. */
#define CAM_DEFAULT_OUTPUTS "cam,erased_cam,mask,cam_mask,ecs_mask,head_mask,scores,erased_image"

typedef struct cam_args {
  const char *image, *model, *out;
  const char *labels, *scales, *outputs;
  int want_float, flip;
  long threads;
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
    } else if (strcmp(o, "--scales") == 0) {
      if (!(c->scales = val(&a))) return usage("--scales needs numbers, comma separated");
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
  api_kv kv[4];
  size_t n = 0;
  if (c->labels) kv[n++] = (api_kv){"labels", c->labels};
  if (c->scales) kv[n++] = (api_kv){"scales", c->scales};
  if (c->flip) kv[n++] = (api_kv){"flip", "true"};
  kv[n++] = (api_kv){"outputs", c->outputs ? c->outputs : CAM_DEFAULT_OUTPUTS};
  api_cam_limits lim = {0};
  api_error ae;
  if (!api_cam_params_parse(kv, n, &lim, req, &ae)) return usage("cam: %s", ae.message);
  return 0;
}

static int unknown_label(const api_error *ae, const api_model_info *info) {
  fprintf(stderr, "ecsnet: %s (the model's classes:", ae->message);
  for (int k = 0; k < info->n_classes; k++)
    fprintf(stderr, " %s", info->class_names[k]);
  fprintf(stderr, ")\n");
  return USAGE_EXIT;
}

/* --float: the float32 CAMs, erased CAMs, scores and labels the result holds. */
static ecs_status write_floats(const char *dir, const api_model_info *info, const api_cam_result *r,
                               ecs_err *e) {
  char path[ECS_PATH_MAX];
  ecs_status st = ecs_path_join(path, sizeof path, dir, "cams.safetensors", e);
  if (st != ECS_OK) return st;
  ecs_st_writer *sw = ecs_st_writer_new(e);
  if (!sw) return e->status;
  int64_t ne[3] = {r->n_labels, r->height, r->width}, ns[1] = {info->n_classes},
          nl[1] = {r->n_labels};
  if (r->cams) st = ecs_st_writer_add(sw, "cams", ECS_F32, 3, ne, r->cams, e);
  if (st == ECS_OK && r->erased_cams)
    st = ecs_st_writer_add(sw, "erased_cams", ECS_F32, 3, ne, r->erased_cams, e);
  if (st == ECS_OK && r->scores) st = ecs_st_writer_add(sw, "scores", ECS_F32, 1, ns, r->scores, e);
  if (st == ECS_OK) st = ecs_st_writer_add(sw, "labels", ECS_I32, 1, nl, r->labels, e);
  if (st == ECS_OK) st = ecs_st_writer_save(sw, path, e);
  ecs_st_writer_free(sw);
  return st;
}

int cmd_cam(int argc, char **argv) {
  cam_args c = {.model = getenv("ECSNET_MODEL")};
  api_cam_request req;
  int rc = parse_cam_args(argc, argv, &c);
  if (rc || (rc = cam_request(&c, &req))) return rc;
  ecs_err e = {0};
  api_model_load_opts lo = {
      .device = cli_device_name(), .n_workers = 1, .threads = (int)c.threads, .engine = g_engine};
  api_model *m = NULL;
  if (api_ecsnet_open(c.model, "ecsnet-cam", 1, &lo, &m, &e) != ECS_OK) return failure(&e);
  api_model_info info;
  m->iface->info(m->ctx, &info);
  int ids[API_LABELS_HARD_MAX], n_ids = 0, png_id = -1;
  api_error ae = {0};
  if (!api_cam_resolve_labels(&req, &info, ids, &n_ids, &png_id, &ae)) {
    rc = unknown_label(&ae, &info);
    api_model_free(m);
    return rc;
  }
  ecs_image *img = NULL;
  api_cam_result r = {0};
  rc = 1;
  if (ecs_image_read(c.image, 0, 0, &img, &e) != ECS_OK) goto done;
  if (mkdir(c.out, 0777) != 0 && errno != EEXIST) {
    ecs_err_set(&e, ECS_ERR_IO, "%s: cannot create the folder: %s", c.out, strerror(errno));
    goto done;
  }
  api_cam_input in = {.rgb = img->data,
                      .width = img->width,
                      .height = img->height,
                      .labels = ids,
                      .n_labels = n_ids,
                      .outputs = req.outputs,
                      .n_scales = req.n_scales,
                      .flip = req.flip,
                      .want_erase_region = (req.outputs & API_OUT_ERASED_IMAGE) != 0};
  memcpy(in.scales, req.scales, sizeof in.scales);
  if (m->iface->run(m->ctx, &in, &r, &e) != ECS_OK) goto done;
  if (!api_cam_write_files(c.out, &info, &r, &ae)) {
    ecs_err_set(&e, ECS_ERR_IO, "%s", ae.message);
    goto done;
  }
  if (c.want_float && write_floats(c.out, &info, &r, &e) != ECS_OK) goto done;
  printf("labels:");
  for (int i = 0; i < r.n_labels; i++)
    printf(" %s", info.class_names[r.labels[i] - 1]);
  printf("\nwrote %s/ (%dx%d, %lld px in Phi)\n", c.out, r.width, r.height, (long long)r.phi);
  rc = 0;
done:
  if (rc) failure(&e);
  api_cam_result_free(&r);
  ecs_image_free(img);
  api_model_free(m);
  return rc;
}
