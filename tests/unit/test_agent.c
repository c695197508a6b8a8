#include <criterion/criterion.h>

Test(agent, placeholder)
{
	cr_assert(1);
}
