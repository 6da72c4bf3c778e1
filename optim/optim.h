// optim/optim.h — everything in optim/, for apps and tests.
#pragma once

#include "optim/adam.h"
#include "optim/adamax.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"
#include "optim/sgd.h"
