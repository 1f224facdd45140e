/* labels.h - label names of a model: its classes, their synonyms and its named groups.
 *
 * A label is a class (id 1..K) or a group (id K+1..K+G); 0 is the background. Names match
 * case-insensitively, with '_' and runs of spaces alike ("golden_retriever" is "Golden
 * Retriever"), in this order: "background"; a synonym (the model file's class_synonyms) that
 * names two classes is a 422 ambiguous_label listing both (ImageNet's "crane": 135 and 518,
 * whose own names are "crane" and "crane 2": the ids or "crane 2" pick one); a class's own
 * name; a group's name; a synonym of one class. A name that matches nothing is a 422
 * unknown_label with the three closest names. This is the one resolver of label names: /cam, ecsnet
 * cam and integrations (an annotation tool matching its label values to the model) use it. */
#ifndef API_LABELS_H
#define API_LABELS_H

#include <stdbool.h>

#include "api-error.h"
#include "model.h"

/* The name of label id 0..K+G ("background", a class, a group), or NULL outside. */
const char *api_label_name(const api_model_info *info, int id);

/* Resolves a label name to its id 0..K+G; false with err (422) when unknown or ambiguous. */
bool api_label_resolve(const api_model_info *info, const char *name, int *id, api_error *err);

/* The members (class ids) of group id K+g: *n of them; NULL when id is not a group. */
const uint16_t *api_label_members(const api_model_info *info, int id, int *n);

#endif
