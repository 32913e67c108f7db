#ifndef POPBRIDGE_VERSION_H
#define POPBRIDGE_VERSION_H

#define POPBRIDGE_NAME "popbridge"
#define POPBRIDGE_VERSION "0.1.0"

#endif
