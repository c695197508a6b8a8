/* being written */
#include "iml.h"
