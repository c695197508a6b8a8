#include <criterion/criterion.h>

Test(fjson, placeholder)
{
	cr_assert(1);
}
