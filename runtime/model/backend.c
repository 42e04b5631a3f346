#include "runtime/model/backend.h"

static const fw_device_backend *linked;

const fw_device_backend *fw_device_backend_linked(void) { return linked; }
void fw_device_backend_register(const fw_device_backend *b) { linked = b; }
