// Atrous: one include for applications.
#pragma once

#include "atrous/model.h"
#include "atrous/plan_info.h"
#include "atrous/session.h"
#include "atrous/status.h"
#include "atrous/tensor.h"
