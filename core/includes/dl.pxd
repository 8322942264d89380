# Run-time loading of shared libraries (POSIX <dlfcn.h>).  glibc >= 2.34 has these in libc;
# older ones (manylinux builds) need -ldl, which setup.py's KERNEL_SETTINGS adds where used.

cdef extern from "<dlfcn.h>" nogil:
    enum:
        RTLD_LAZY
        RTLD_NOW
        RTLD_LOCAL
        RTLD_GLOBAL

    void* dlopen(const char* filename, int flags)
    void* dlsym(void* handle, const char* symbol)
    int dlclose(void* handle)
    char* dlerror()               # message of the last failure in this thread, NULL if none
