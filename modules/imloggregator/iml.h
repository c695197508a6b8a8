/* iml.h: being written */
#ifndef IML_H
#define IML_H
#endif
